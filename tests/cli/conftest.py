import os
import tempfile

# Evaluation commands cache features under $SSLVIT_CACHE_DIR; keep the tests' entries out of ~/.cache.
os.environ.setdefault("SSLVIT_CACHE_DIR", tempfile.mkdtemp(prefix="sslvit-test-cache-"))
