"""The PyTorch example's project root: pytest puts this directory on sys.path, so the tests
import ``seed_net``."""
