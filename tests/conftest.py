import pytest

from scripts import SUBSET


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory):
    """Three plays prepared at character level into a temporary folder (one per test module)."""
    import train
    out = tmp_path_factory.mktemp("shakespeare_char")
    train.load_prepare("shakespeare_char").prepare(out_dir=str(out), plays=SUBSET)
    return str(out)
