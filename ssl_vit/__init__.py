"""sslvit: self-supervised pretraining of Vision Transformers (MoCo v3), with live stability diagnostics."""

__version__ = "0.1.0"

from ssl_vit.errors import SslvitError  # noqa: E402

__all__ = ["SslvitError", "__version__"]

# Config checks live next to their consumers (data, models, methods register theirs when imported; config sits
# below them and cannot import them: ssl_vit/config/validate.py). The top package imports them, so that
# `from ssl_vit.config import load_config` validates fully in any process.
import ssl_vit.methods  # noqa: E402,F401
