"""sslvit: self-supervised pretraining of Vision Transformers (MoCo v3), with live stability diagnostics."""

__version__ = "0.1.0"

from ssl_vit.errors import SslvitError  # noqa: E402

__all__ = ["SslvitError", "__version__"]
