"""Tag vocabularies and StarGAN domains: encoding, text parsing, errors, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.vocab import (
    MLDS_EYES,
    MLDS_HAIR,
    Domains,
    TagGroup,
    Vocab,
    VocabError,
    load_vocab,
    mlds_vocab,
    save_vocab,
)


@pytest.fixture
def vocab() -> Vocab:
    return mlds_vocab()


def test_mlds_sizes(vocab):
    assert vocab.n_tags == 22 and vocab.group_sizes == [12, 10] and vocab.offsets() == [0, 12]
    assert vocab.group_names == ["hair", "eyes"] and vocab.group("eye").name == "eyes"
    assert len(vocab.all_combinations()) == 120


def test_encode_decode_every_combination(vocab):
    for tags in vocab.all_combinations():
        v = vocab.encode(tags)
        assert v.dtype == np.float32 and v.shape == (22,) and v.sum() == 2
        assert vocab.decode(v) == tags


def test_encode_known_positions(vocab):
    v = vocab.encode({"hair": "blonde", "eyes": "aqua"})
    assert np.flatnonzero(v).tolist() == [MLDS_HAIR.index("blonde"), 12 + MLDS_EYES.index("aqua")]
    assert vocab.encode({"hair": "blue", "eye": "red"}).sum() == 2  # alias as key


def test_encode_indices_batch_and_range(vocab):
    out = vocab.encode_indices(np.array([[0, 0], [11, 9]]))
    assert out.shape == (2, 22) and out[1, 11] == 1 and out[1, 21] == 1
    assert vocab.encode_indices(np.zeros((0, 2), np.int64)).shape == (0, 22)
    with pytest.raises(VocabError, match="hair index out of range"):
        vocab.encode_indices([12, 0])


def test_decode_soft_vector_and_bad_length(vocab):
    soft = np.full(22, 0.1, np.float32)
    soft[3], soft[12 + 5] = 0.6, 0.9
    assert vocab.decode(soft) == {"hair": MLDS_HAIR[3], "eyes": MLDS_EYES[5]}
    with pytest.raises(VocabError, match="length 21, expected 22"):
        vocab.decode(np.zeros(21))


@pytest.mark.parametrize("text", ["blue hair red eyes", "Red eyes, blue hair.", "blue hair red eye"])
def test_parse(vocab, text):
    assert vocab.parse(text) == {"hair": "blue", "eyes": "red"}
    assert vocab.parse(vocab.format(vocab.parse(text))) == vocab.parse(text)


@pytest.mark.parametrize("text, message", [
    ("bleu hair red eyes", "unknown hair tag 'bleu'.*valid hair tags are orange, white"),
    ("blue hair red eyes please", "unknown word.*'please'.*valid tags are hair: orange"),
    ("blue hair red hair green eyes", "ambiguous: hair given twice.*valid hair tags are"),
    ("hair blue", "'hair' in 'hair blue' has no tag before it; valid tags are"),
    ("blue hair", "gives no eyes tag; valid tags are"),
    ("", "gives no hair or eyes tag"),
])
def test_parse_errors_name_the_word_and_list_tags(vocab, text, message):
    with pytest.raises(VocabError, match=message):
        vocab.parse(text)


def test_parse_allow_missing(vocab):
    assert vocab.parse("pink eyes", allow_missing=True) == {"eyes": "pink"}


def test_indices_errors(vocab):
    with pytest.raises(VocabError, match="unknown tag group 'skin'"):
        vocab.indices({"hair": "blue", "eyes": "red", "skin": "pale"})
    with pytest.raises(VocabError, match="no eyes tag given"):
        vocab.indices({"hair": "blue"})
    with pytest.raises(VocabError, match="unknown hair tag 'teal'"):
        vocab.indices({"hair": "teal", "eyes": "red"})


def test_multiword_and_digit_tags():
    v = Vocab((TagGroup("hair", ("light blue", "dark")), TagGroup("face", ("0", "1", "2"))))
    assert v.parse("light blue hair 2 face") == {"hair": "light blue", "face": "2"}
    assert v.format({"hair": "light blue", "face": "2"}) == "light blue hair 2 face"


def test_testing_tags(vocab, tmp_path):
    p = tmp_path / "testing_tags.txt"
    p.write_text("1,blue hair blue eyes\n\n2,blonde hair red eyes\n")
    assert vocab.parse_testing_tags(p) == [("1", {"hair": "blue", "eyes": "blue"}),
                                           ("2", {"hair": "blonde", "eyes": "red"})]
    p.write_text("1,blue hair blue eyes\n2 blonde hair red eyes\n")
    with pytest.raises(VocabError, match=r"testing_tags.txt:2: expected 'id,<tags>'"):
        vocab.parse_testing_tags(p)
    p.write_text("1,blue hair blue eyes\n2,teal hair red eyes\n")
    with pytest.raises(VocabError, match=r"testing_tags.txt:2: unknown hair tag 'teal'"):
        vocab.parse_testing_tags(p)


def test_invalid_vocabularies():
    with pytest.raises(VocabError, match="lists a tag twice"):
        TagGroup("hair", ("red", "red"))
    with pytest.raises(VocabError, match="has no tags"):
        TagGroup("hair", ())
    with pytest.raises(VocabError, match="name more than one group"):
        Vocab((TagGroup("hair", ("red",)), TagGroup("eyes", ("red",), ("hair",))))
    with pytest.raises(VocabError, match="also group words"):
        Vocab((TagGroup("hair", ("eyes",)), TagGroup("eyes", ("red",))))


def test_lists_become_tuples():
    v = Vocab([TagGroup("hair", ["red", "blue"])])  # type: ignore[arg-type]
    assert v.groups[0].tags == ("red", "blue") and hash(v)


def test_save_load_roundtrip(vocab, tmp_path):
    save_vocab(vocab, tmp_path / "vocab.json")
    assert load_vocab(tmp_path / "vocab.json") == vocab
    d = Domains(("Black_Hair", "Blond_Hair", "Male"), (("Black_Hair", "Blond_Hair"),))
    save_vocab(d, tmp_path / "domains.json")
    assert load_vocab(tmp_path / "domains.json") == d
    with pytest.raises(VocabError, match="expected a tag vocabulary"):
        Vocab.from_dict(d.to_dict())
    with pytest.raises(VocabError, match="expected a domain list"):
        Domains.from_dict(vocab.to_dict())


@pytest.fixture
def domains() -> Domains:
    return Domains(("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"),
                   (("Black_Hair", "Blond_Hair", "Brown_Hair"),))


def test_domains_apply_switches_siblings_off(domains):
    src = np.array([1, 0, 0, 1, 0], np.float32)
    assert domains.apply(src, ["Blond_Hair"]).tolist() == [0, 1, 0, 1, 0]
    assert domains.apply(src, ["Young"]).tolist() == [1, 0, 0, 1, 1]
    batch = np.stack([src, src])
    assert domains.apply(batch, ["Brown_Hair"])[:, :3].tolist() == [[0, 0, 1]] * 2
    assert src.tolist() == [1, 0, 0, 1, 0]  # not modified


def test_domains_grid_targets(domains):
    src = np.array([1, 0, 0, 1, 0], np.float32)
    targets = dict(domains.grid_targets(src))
    assert list(targets) == list(domains.names)
    assert targets["Black_Hair"].tolist() == [1, 0, 0, 1, 0]  # exclusive: set, not flipped
    assert targets["Male"].tolist() == [1, 0, 0, 0, 0]  # binary: flipped
    assert targets["Young"].tolist() == [1, 0, 0, 1, 1]


def test_domains_errors(domains):
    with pytest.raises(VocabError, match="unknown domain 'Bald'.*Black_Hair, Blond_Hair"):
        domains.index("Bald")
    with pytest.raises(VocabError, match="length 4, expected 5"):
        domains.apply(np.zeros(4), ["Male"])
    with pytest.raises(VocabError, match="exclusive domain 'Red_Hair'"):
        Domains(("Black_Hair",), (("Black_Hair", "Red_Hair"),))
    with pytest.raises(VocabError, match="listed twice"):
        Domains(("Male", "Male"))
