"""netpipe: reproducible measurements of container network data paths.

Who does what: the config (``netpipe.config``) says which cells to measure and
``netpipe.matrix`` expands it into cells; a backend (``netpipe.backends``) makes
the endpoints that stand in for containers; a driver (``netpipe.drivers``)
plugs each endpoint's data interface into the node; ``netpipe.iperf`` builds
iperf3 command lines and reads their JSON; ``netpipe.runner`` measures one cell
from provisioning to teardown and writes its result file; ``netpipe.aggregate``
and ``netpipe.report`` turn result files into a summary and an HTML report.
"""

__version__ = "0.1.0"
