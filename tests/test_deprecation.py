"""The shared deprecation helpers: the old spelling runs the new one and says which it is."""

import warnings

import pytest

from sdn._deprecation import deprecated_alias, renamed_keywords


def test_renamed_keyword_warns_names_the_new_one_and_passes_the_value():
    @renamed_keywords("f", old="new")
    def f(*, new=0):
        return new

    with pytest.warns(DeprecationWarning, match=r"f\(new=\.\.\.\)"):
        assert f(old=7) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(new=3) == 3
    with pytest.raises(TypeError, match="both old="):
        f(old=1, new=2)


def test_deprecated_alias_warns_and_calls_through():
    def g(x):
        return 2 * x

    old = deprecated_alias(g, "h", "g")
    with pytest.warns(DeprecationWarning, match="use g instead"):
        assert old(4) == 8
