"""The exceptions netpipe raises: one small tree under NetpipeError."""


class NetpipeError(Exception):
    """Base of every error netpipe raises on purpose."""


class ConfigError(NetpipeError):
    """The configuration is invalid; raised before anything is provisioned."""


class DriverUnavailable(NetpipeError):
    """A driver cannot run on this kernel or host; the message says why."""


class ProvisionError(NetpipeError):
    """Creating or configuring a namespace, link or address failed."""


class MeasurementError(NetpipeError):
    """iperf3 did not produce a usable measurement."""


class NodeError(NetpipeError):
    """A node (this machine or a remote one) could not do what was asked."""


class IperfFailure(MeasurementError):
    """iperf3 failed in a known way; ``error_class`` names it for the result."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class
