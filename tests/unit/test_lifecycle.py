import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.leads.emails import InvalidEmail, email_key, normalise_email
from nurture.leads.lifecycle import FUNNEL, Stage, parse_stage


def test_funnel_order():
    assert [s.value for s in FUNNEL] == ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]
    assert Stage.LOST.rank is None
    assert Stage.MQL.rank == 2


@pytest.mark.parametrize(
    ("raw", "stage"),
    [
        ("MQL", Stage.MQL),
        ("prospect", Stage.LEAD),
        ("Suspect", Stage.SUBSCRIBER),
        ("marketingqualifiedlead", Stage.MQL),
        ("Closed Lost", Stage.LOST),
        ("opportunity", Stage.OPPORTUNITY),
    ],
)
def test_parse_stage_accepts_sales_names(raw, stage):
    assert parse_stage(raw) is stage


def test_parse_stage_names_the_choices():
    with pytest.raises(ValueError, match="unknown stage 'hotlead'; expected one of subscriber"):
        parse_stage("hotlead")


def test_normalise_email_lowercases_domain_only():
    assert normalise_email("  Ann.Lee@Example.ORG\t") == "Ann.Lee@example.org"


@pytest.mark.parametrize("bad", ["", "   ", "plain", "a@", "@b.com", "a b@example.com", "a@example..com"])
def test_normalise_email_rejects(bad):
    with pytest.raises(InvalidEmail):
        normalise_email(bad)


_local = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+"),
    min_size=1,
    max_size=20,
).filter(lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
_label = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), min_size=1, max_size=12
)


@given(
    local=_local,
    labels=st.lists(_label, min_size=1, max_size=3),
    tld=st.sampled_from(["com", "ORG", "Fr", "io"]),
    pad=st.sampled_from(["", " ", "\t", "  "]),
)
def test_normalisation_properties(local, labels, tld, pad):
    raw = f"{pad}{local}@{'.'.join(labels)}.{tld}{pad}"
    once = normalise_email(raw)
    assert normalise_email(once) == once  # idempotent
    assert once == once.strip()
    local_part, domain = once.rsplit("@", 1)
    assert domain == domain.lower()
    assert local_part == local  # the local part keeps its case
    assert email_key(raw) == email_key(once) == once.lower()
