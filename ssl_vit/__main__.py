"""`python -m ssl_vit ...` (also the torchrun entry: `torchrun --nproc-per-node N -m ssl_vit pretrain ...`)."""

from ssl_vit.cli import main

if __name__ == "__main__":
    main()
