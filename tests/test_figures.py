"""Figure titles say which data shown is SYNTHETIC."""

import pandas as pd

from xpipe.report.figures import _title


def test_title_names_the_synthetic_mixes_only():
    df = pd.DataFrame({"mix": ["real", "umass", "umass", "fiu"], "synthetic": [False, True, True, True]})
    assert _title("T", df) == "T\nSYNTHETIC DATA in mix fiu, umass (generated, not recorded)"
    assert _title("T", df[df["synthetic"]]) == "T\nSYNTHETIC DATA (generated, not recorded)"
    assert _title("T", df[~df["synthetic"]]) == "T"
