"""``python -m patchforensics`` (also what ``torchrun … -m patchforensics`` runs)."""
import sys

from .cli import main

sys.exit(main())
