"""Hostile spec inputs: id templates, Redis URLs, ids with NUL, and what a run writes out."""

from __future__ import annotations

import hashlib
import re
import tracemalloc
from pathlib import Path

import jsonschema
import pytest
import yaml

from datasetjob.errors import OptionError, SpecError
from datasetjob.local.options import check_redis_url_option
from datasetjob.redaction import redact, redact_text, restore_credentials, split_credentials
from datasetjob.spec import limits
from datasetjob.spec.item_source import count_unique_ids, item_id, item_ids, iter_items
from datasetjob.spec.model import run_id, spec_from_dict, spec_from_document
from datasetjob.spec.schema import spec_schema
from datasetjob.store.fingerprint import fingerprint_inputs, generator_fingerprint
from datasetjob_operator.cluster_spec import checked_item_total

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "smart-money-flow.yaml"
GENERATOR = {"function": "m:f"}


def product_spec(template: str, **product):
    return spec_from_dict("demo", {"items": {"product": product, "idTemplate": template}, "generator": GENERATOR})


def problems_of(fn, *args, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    return info.value.problems


# -- idTemplate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{k:>999999999}",  # a format spec: the width is a memory bomb
        "{k:>{k}}",
        "{k:x}",
        "{k!r}",  # a conversion
        "{k!s:>9}",
        "{k.real}",  # attribute access
        "{k[0]}",  # index access
        "{0}",
        "{}",
        "{k",
        "k}",
        "{k}}",
    ],
)
def test_an_id_template_takes_only_plain_field_placeholders(template):
    problems = problems_of(product_spec, template, k=["a", "b"])
    assert len(problems) == 1 and problems[0].startswith("spec.items.idTemplate: "), problems
    assert "does not match" not in problems[0]  # says what is wrong, not the schema's pattern


@pytest.mark.parametrize(
    "template, ids",
    [
        ("{k}", ["a", "b"]),
        ("{k}:{n}", ["a:1", "b:1"]),
        ("{{{k}}}", ["{a}", "{b}"]),
        ("id-{k}}}{{", ["id-a}{", "id-b}{"]),
    ],
)
def test_plain_placeholders_and_brace_escapes_still_work(template, ids):
    s = product_spec(template, k=["a", "b"], n=[1])
    assert item_ids(iter_items(s.items), s.items.id_template) == ids


def test_the_schema_refuses_format_specs_as_the_api_server_would():
    """The CRD carries the pattern: the API server refuses what dsj validate refuses."""
    prop = spec_schema()["properties"]["items"]["properties"]["idTemplate"]
    assert "pattern" in prop and "maxLength" in prop
    check = jsonschema.Draft4Validator(prop)
    for bad in ("{k:>999999999}", "{k!r}", "{k.x}", "{k[0]}", "{}", "{k"):
        assert not check.is_valid(bad), bad
    for good in ("{k}", "{symbol}:{date}", "{{literal}} {k}", "a}}b{{c{k}"):
        assert check.is_valid(good), good
    crd = yaml.safe_load((SAMPLE.parents[1] / "crd.yaml").read_text())
    version = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert version["properties"]["spec"]["properties"]["items"]["properties"]["idTemplate"] == prop


def test_an_id_longer_than_the_cap_is_refused_naming_the_limit():
    long = "x" * (limits.MAX_ID_LENGTH + 1)
    problems = problems_of(item_id, {"k": long}, "{k}")
    assert problems[0].startswith("spec.items.idTemplate: ") and str(limits.MAX_ID_LENGTH) in problems[0]
    assert len(item_id({"k": "x" * limits.MAX_ID_LENGTH}, "{k}")) == limits.MAX_ID_LENGTH


def test_many_placeholders_of_a_big_value_are_refused_before_the_id_is_built():
    big = {"k": "x" * (1 << 20), "d": {"nested": ["y" * (1 << 16)] * 16}}
    tracemalloc.start()
    try:
        for template in ("{k}" * 1000, "{d}" * 1000):
            problems_of(item_id, big, template)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes"


def test_the_operator_refuses_a_format_spec_template_without_building_it():
    """An object stored before the CRD had the pattern is parsed again by the operator."""
    raw = {"items": {"product": {"k": ["a", "b"]}, "idTemplate": "{k:>999999999}"}, "generator": GENERATOR}
    assert problems_of(spec_from_dict, "demo", raw)[0].startswith("spec.items.idTemplate: ")
    s = product_spec("{k}" * 200, k=["a" * 2, "b" * 2])
    assert checked_item_total(s, None) == 2
    s = product_spec("{k}" * 200, k=["a" * 100, "b" * 100])
    assert str(limits.MAX_ID_LENGTH) in problems_of(checked_item_total, s, None)[0]


# -- ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "items, template",
    [
        ({"values": ["ok", "bad\x00id"]}, None),
        ({"values": [{"s": "a"}, {"s": "b\x00"}]}, "{s}"),
        ({"product": {"s": ["a", "b\x00c"]}}, "{s}"),
    ],
)
def test_an_id_with_a_nul_character_is_refused_naming_the_item(items, template):
    raw_items = dict(items, **({"idTemplate": template} if template else {}))
    s = spec_from_dict("demo", {"items": raw_items, "generator": GENERATOR})
    for check in (item_ids, count_unique_ids):
        problems = problems_of(check, iter_items(s.items), s.items.id_template)
        assert problems[0].startswith("spec.items: item ") and "NUL" in problems[0], problems
        assert "\x00" not in problems[0]


# -- Redis URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, said",
    [
        ("redis://host:99999/0", "port"),
        ("redis://host:0/0", "port"),
        ("redis://host:abc/0", "port"),
        ("redis://host:6379/abc", "database"),
        ("redis://host:6379/0/1", "database"),
        ("rediss://host:6379/0?db=x", "database"),
        ("redis://[::1/0", "not a valid URL"),
        ("redis:///0", "host"),
        ("unix://", "socket path"),
    ],
)
def test_a_redis_url_that_does_not_parse_is_refused_naming_the_field(url, said):
    raw = {"items": {"values": ["a"]}, "generator": GENERATOR, "cache": {"redisUrl": url}}
    problems = problems_of(spec_from_dict, "demo", raw)
    assert len(problems) == 1 and problems[0].startswith("spec.cache.redisUrl: ") and said in problems[0], problems
    with pytest.raises(OptionError) as info:
        check_redis_url_option(url)
    assert info.value.problems[0].startswith("--redis-url: ") and said in info.value.problems[0]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "redis://host:6379/0",
        "redis://host",
        "redis://:p%40ss@host:6380/15?password=x&ssl_cert_reqs=none",
        "rediss://user:pw@h:65535",
        "redis://[::1]:6379/2",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_good_redis_urls_pass(url):
    raw = {"items": {"values": ["a"]}, "generator": GENERATOR, "cache": {"redisUrl": url}}
    assert spec_from_dict("demo", raw).cache.redis_url == url
    if url:
        check_redis_url_option(url)


# -- what is written out --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        ("redis://h:6399/0?password=pw1", "redis://h:6399/0?password=***"),
        ("redis://h/0?db=1&Password=pw1&x=2", "redis://h/0?db=1&Password=***&x=2"),
        ("https://s3/x?X-Amz-Signature=abc&a=b#f", "https://s3/x?X-Amz-Signature=***&a=b#f"),
        ("cannot reach redis://h/0?token=abc (timeout)", "cannot reach redis://h/0?token=*** (timeout)"),
        ("'https://api/x?api_key=abc&sig=d'", "'https://api/x?api_key=***&sig=***'"),
        ("https://api/x?keys=1&monkey=2", "https://api/x?keys=1&monkey=2"),
        ("a ?password=x outside a URL", "a ?password=x outside a URL"),
    ],
)
def test_password_like_query_parameters_are_masked(text, shown):
    assert redact_text(text) == shown


def test_a_literal_env_value_is_written_as_its_hash_and_given_back_to_workers():
    doc = {
        "spec": {
            "generator": {
                "function": "m:f",
                "env": [{"name": "API_KEY", "value": "sk-live-123"}, {"name": "B", "valueFrom": {"x": "y"}}],
            }
        }
    }
    hidden, secrets = split_credentials(doc)
    digest = "sha256:" + hashlib.sha256(b"sk-live-123").hexdigest()
    assert hidden["spec"]["generator"]["env"][0] == {"name": "API_KEY", "value": digest}
    assert hidden["spec"]["generator"]["env"][1] == doc["spec"]["generator"]["env"][1]
    assert "sk-live-123" not in str(redact(doc))
    assert restore_credentials(hidden, secrets) == doc


def test_the_fingerprint_hashes_env_values_and_still_changes_with_them():
    def spec_with(value: str):
        gen = {"function": "m:f", "env": [{"name": "API_KEY", "value": value}]}
        return spec_from_dict("demo", {"items": {"values": ["a"]}, "generator": gen})

    one, two = fingerprint_inputs(spec_with("sk-one")), fingerprint_inputs(spec_with("sk-two"))
    assert "sk-one" not in str(one) and "sk-two" not in str(two)
    assert generator_fingerprint(one) != generator_fingerprint(two)


def test_the_sample_keeps_its_run_id_and_fingerprint():
    sample = spec_from_document(yaml.safe_load(SAMPLE.read_text()))
    assert run_id(sample.raw_spec) == "98a5103a"
    inputs = fingerprint_inputs(sample)
    assert inputs["env"] == [] and re.fullmatch("[0-9a-f]{16}", generator_fingerprint(inputs))
