"""tagvocab: the one tag/domain module of trainer, runtime and demo; torch-free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagvocab import (
    RANDOM,
    Domains,
    TagGroup,
    Vocab,
    VocabError,
    as_vectors,
    load_vocab,
    save_vocab,
    vocab_from_dict,
)

REPO = Path(__file__).resolve().parents[1]
HAIR = ("orange", "blue", "light blue", "Black")
EYES = ("red", "blue", "green")


@pytest.fixture
def vocab() -> Vocab:
    return Vocab((TagGroup("hair", HAIR), TagGroup("eyes", EYES, ("eye",)),
                  TagGroup("eye_angle", ("0", "1"))))


@pytest.fixture
def domains() -> Domains:
    return Domains(("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"),
                   (("Black_Hair", "Blond_Hair", "Brown_Hair"),))


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


def test_tagvocab_and_runtime_import_no_torch():
    res = _python("import sys, tagvocab, export.runtime\n"
                  "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_tagvocab_and_runtime_work_where_torch_cannot_be_imported():
    """As in a venv without torch: any import of it fails."""
    res = _python(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import tagvocab, export.runtime, trainer.noise\n"
        "v = tagvocab.Vocab((tagvocab.TagGroup('hair', ('red', 'blue')),))\n"
        "print(v.parse('blue hair'))\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "{'hair': 'blue'}"


# -- parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["blue hair red eyes 1 eye_angle", "1 EYE_ANGLE, Red eye. Blue Hair"])
def test_parse_ignores_case_order_and_punctuation(vocab, text):
    got = vocab.parse(text)
    assert got == {"hair": "blue", "eyes": "red", "eye_angle": "1"}
    assert list(got) == ["hair", "eyes", "eye_angle"], "group order, whatever the text order"


def test_parse_multiword_and_canonical_case(vocab):
    assert vocab.parse("light blue hair green eyes 0 eye_angle")["hair"] == "light blue"
    assert vocab.parse("black hair green eyes 0 eye_angle")["hair"] == "Black"


def test_parse_random(vocab):
    assert vocab.parse("random", random=RANDOM) == dict.fromkeys(vocab.group_names, RANDOM)
    assert vocab.parse("blue hair random eyes 0 eye_angle", random=RANDOM)["eyes"] == RANDOM
    with pytest.raises(VocabError, match="unknown eyes tag 'random'"):
        vocab.parse("blue hair random eyes 0 eye_angle")  # only where random is allowed


def test_parse_allow_missing(vocab):
    assert vocab.parse("green eyes", allow_missing=True) == {"eyes": "green"}


@pytest.mark.parametrize("text, random, message", [
    ("teal hair red eyes 0 eye_angle", None,
     r"^unknown hair tag 'teal' in '.*'; valid hair tags are orange, blue, light blue, Black$"),
    ("teal hair", RANDOM, r"unknown hair tag 'teal'.*valid hair tags are .*Black \(or random\)$"),
    ("blue hair orange hair", None,
     r"gives hair twice, which is ambiguous: hair given twice \('blue' and 'orange'\)"),
    ("hair blue", None, "'hair' in 'hair blue' has no tag before it; valid tags are hair: "),
    ("blue hair red eyes please", None, r"unknown word\(s\) 'please'.*'<tag> <group>'"),
    ("blue hair", None, r"^'blue hair' gives no eyes or eye_angle tag; valid tags are hair: "),
    ("blue hair", RANDOM, r"gives no eyes or eye_angle tag \(use 'random' for any\); valid"),
])
def test_parse_errors_name_the_word_and_what_was_expected(vocab, text, random, message):
    with pytest.raises(VocabError, match=message):
        vocab.parse(text, random=random)


# -- mappings ---------------------------------------------------------------------------
def test_resolve_mapping(vocab):
    got = vocab.resolve({"EYE": " Green ", "hair": "BLACK", "eye_angle": "1"})
    assert got == {"hair": "Black", "eyes": "green", "eye_angle": "1"}
    assert vocab.indices(got) == [3, 2, 1]
    assert vocab.resolve({"hair": "blue", "eyes": RANDOM, "eye_angle": "0"},
                         random=RANDOM)["eyes"] == RANDOM


def test_resolve_lenient_fills_and_ignores(vocab):
    got = vocab.resolve({"hair": "blue", "eyes": "", "nose": "big"}, random=RANDOM,
                        default=RANDOM, ignore_unknown=True)
    assert got == {"hair": "blue", "eyes": RANDOM, "eye_angle": RANDOM}


@pytest.mark.parametrize("tags, random, message", [
    ({"nose": "big"}, None, "^unknown tag group 'nose'; groups are hair, eyes, eye_angle$"),
    ({"hair": "teal"}, None, "^unknown hair tag 'teal'; valid hair tags are orange, blue"),
    ({"hair": "blue"}, None, "^no eyes or eye_angle tag given; valid tags are hair: "),
    ({"hair": "blue"}, RANDOM, r"^\{'hair': 'blue'\} gives no eyes or eye_angle tag \(use "),
])
def test_resolve_errors(vocab, tags, random, message):
    with pytest.raises(VocabError, match=message):
        vocab.resolve(tags, random=random)


def test_group_lookup(vocab):
    assert vocab.group("Eye").name == "eyes" and vocab.find_group("nose") is None
    with pytest.raises(VocabError, match="unknown tag group 'nose'; groups are hair, eyes"):
        vocab.group("nose")


# -- encoding and draws -----------------------------------------------------------------
def test_encode_decode_round_trip(vocab):
    for tags in vocab.all_combinations():
        v = vocab.encode(tags)
        assert v.shape == (vocab.n_tags,) and v.sum() == 3 and vocab.decode(v) == tags
    with pytest.raises(VocabError, match="tag vector has length 3, expected 9"):
        vocab.decode(np.zeros(3))
    with pytest.raises(VocabError, match=r"eyes index out of range 0..2"):
        vocab.encode_indices([0, 3, 0])


def test_draws_follow_the_rng_group_by_group(vocab):
    choice = {"hair": RANDOM, "eyes": "blue", "eye_angle": RANDOM}
    idx = vocab.draw_indices(choice, 5, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    hair, angle = rng.integers(4, size=5), rng.integers(2, size=5)
    assert idx.tolist() == np.stack([hair, np.full(5, 1), angle], 1).tolist()
    drawn = vocab.draw(choice, 5, np.random.default_rng(7))
    assert [d["hair"] for d in drawn] == [HAIR[i] for i in hair]
    assert {d["eyes"] for d in drawn} == {"blue"}
    assert vocab.draw({"hair": "orange", "eyes": "red", "eye_angle": "0"}, 2,
                      np.random.default_rng(0)) == [{"hair": "orange", "eyes": "red",
                                                      "eye_angle": "0"}] * 2


def test_vocab_round_trip(vocab, tmp_path):
    assert Vocab.from_dict(vocab.to_dict()) == vocab
    assert vocab_from_dict(vocab.to_dict()) == vocab
    assert Vocab.from_dict({"groups": vocab.to_dict()["groups"]}) == vocab, "ONNX metadata form"
    save_vocab(vocab, tmp_path / "vocab.json")
    assert load_vocab(tmp_path / "vocab.json") == vocab
    with pytest.raises(VocabError, match="expected a tag vocabulary, got kind 'domains'"):
        Vocab.from_dict({"kind": "domains", "groups": []})


# -- domains ----------------------------------------------------------------------------
def test_domain_lookup(domains):
    assert domains.index("blond_hair ") == 1 and domains.find("Bald") is None
    assert domains.among(["young", "Bald", "black_hair"]) == ["Black_Hair", "Young"]
    assert domains.is_exclusive("brown_hair") and not domains.is_exclusive("Male")
    with pytest.raises(VocabError, match="^unknown domain 'Bald'; this model's domains are "
                                         "Black_Hair, Blond_Hair, Brown_Hair, Male, Young$"):
        domains.index("Bald")


def test_apply_switches_siblings_off_and_mappings_off(domains):
    src = np.array([1, 0, 0, 1, 0], np.float32)
    assert domains.apply(src, ["blond_hair"]).tolist() == [0, 1, 0, 1, 0]
    assert domains.apply(src, {"Male": 0, "Young": 1}).tolist() == [1, 0, 0, 0, 1]
    assert domains.apply(src, {"Black_Hair": 0}).tolist() == [0, 0, 0, 1, 0]
    assert src.tolist() == [1, 0, 0, 1, 0], "source not modified"


def test_vector_specs(domains):
    assert domains.vector("Blond_Hair, young").tolist() == [0, 1, 0, 0, 1]
    assert domains.vector(["Brown_Hair"], source=["Black_Hair", "Male"]).tolist() == \
        [0, 0, 1, 1, 0]
    assert domains.vector({"Male": 0}, source=np.ones((1, 5))).tolist() == [1, 1, 1, 0, 1]
    target = np.array([0, 1, 1, 0, 0], np.float32)
    assert domains.vector(target, source=["Male"]).tolist() == target.tolist(), "taken as is"
    with pytest.raises(VocabError, match=r"domain vector has length 4, expected 5 \(Black_Hair"):
        domains.vector([], source=np.zeros(4))


def test_vector_reads_numbers_written_as_lists(domains):
    """A list of numbers is a vector (as in JSON), not the domain names "0" and "1"."""
    assert domains.vector([0, 1, 0, 0, 1]).tolist() == [0, 1, 0, 0, 1]
    assert domains.vector(["Brown_Hair"], source=(1, 0, 0, 1, 0.0)).tolist() == [0, 0, 1, 1, 0]
    assert domains.vector({"Male": 1}, source=[[1, 0, 0, 0, 0]]).tolist() == [1, 0, 0, 1, 0]
    assert as_vectors([[0, 1], [1, 0]]).shape == (2, 2)
    assert as_vectors([[0, 1], [1, 0]]).dtype == np.float32
    assert domains.vector([False, True, False, False, True]).tolist() == [0, 1, 0, 0, 1]
    assert as_vectors(["Male", "Young"]) == ["Male", "Young"], "names stay names"
    assert as_vectors([]) == [] and as_vectors([["Male"], ["Young", "Male"]]) == [
        ["Male"], ["Young", "Male"]], "ragged names as given"
    with pytest.raises(VocabError, match=r"domain vectors of unequal lengths \[5, 2\]"):
        domains.vector([[0, 1, 0, 0, 0], [1, 0]])
    with pytest.raises(VocabError, match=r"unequal lengths \[5, 2\]"):
        as_vectors([np.zeros(5), (True, False)])  # arrays and tuples are rows too
    with pytest.raises(VocabError, match=r"unequal lengths \[0, 2\]"):
        as_vectors([[], [0, 1]])
    for mixed in ([[0, 1, 0, 0, 0], "Male"], [0, [1, 0]], [np.array(1.0), [0, 1]]):
        with pytest.raises(VocabError, match="mixes domain vectors with other items"):
            as_vectors(mixed)
    with pytest.raises(VocabError, match="length 3, expected 5"):
        domains.vector([0, 1, 0])
    with pytest.raises(VocabError, match="unknown domain 1; "):
        domains.vector(["Male", 1])  # mixed: read as names, and the message says which one


def test_grid_targets_named_and_batched(domains):
    src = np.array([[1, 0, 0, 1, 0], [0, 0, 1, 0, 1]], np.float32)
    grid = domains.grid_targets(src, ["blond_hair", "male"])
    assert [d for d, _ in grid] == ["Blond_Hair", "Male"]
    assert grid[0][1].tolist() == [[0, 1, 0, 1, 0], [0, 1, 0, 0, 1]]
    assert grid[1][1].tolist() == [[1, 0, 0, 0, 0], [0, 0, 1, 1, 1]]
    assert [d for d, _ in domains.grid_targets(src)] == list(domains.names)


def test_domains_round_trip(domains, tmp_path):
    assert Domains.from_dict(domains.to_dict()) == domains
    assert vocab_from_dict(domains.to_dict()) == domains
    save_vocab(domains, tmp_path / "vocab.json")
    assert load_vocab(tmp_path / "vocab.json") == domains
    with pytest.raises(VocabError, match="expected a domain list, got kind 'tags'"):
        Domains.from_dict({"kind": "tags", "names": []})
    with pytest.raises(VocabError, match="exclusive domain 'Red_Hair' is not one of"):
        Domains.from_dict({"kind": "domains", "names": ["Male"], "exclusive": [["Red_Hair"]]})


# -- the runtime's use ------------------------------------------------------------------
def test_runtime_rebuilds_vocab_from_metadata(vocab, domains):
    import json

    from export.runtime import InputError, parse_metadata

    gan = parse_metadata({"kind": "gan", "image_size": "32", "z_dim": "8",
                          "tag_groups": json.dumps(vocab.to_dict()["groups"])})
    assert gan.tag_vocab == vocab and gan.tag_groups == vocab.groups and gan.n_tags == 9
    assert gan.domains == () and gan.exclusive == ()
    dom = {k: v for k, v in domains.to_dict().items() if k != "kind"}
    star = parse_metadata({"kind": "stargan", "image_size": "32", "domains": json.dumps(dom)})
    assert star.domain_vocab == domains and star.tag_groups == () and not star.conditional
    bad = json.dumps([{"name": "hair", "tags": ["red", "red"]}])
    with pytest.raises(InputError, match="malformed tagface metadata: VocabError: group 'hair'"):
        parse_metadata({"kind": "gan", "image_size": "32", "tag_groups": bad})


def test_cuda_probe_module():
    from export import cuda_probe, runtime

    for ok, why in (cuda_probe.cuda_driver(), runtime.cuda_status()):
        assert isinstance(ok, bool) and isinstance(why, str) and why
    version = cuda_probe.ort_cuda_version()
    assert version is None or all(isinstance(x, int) for x in version)
    assert runtime.choose_providers("cpu") == ([runtime.CPU], "CPU requested")
