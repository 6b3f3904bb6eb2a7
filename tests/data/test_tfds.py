"""The TFDS `utk_face` builder (manual dir) gives the same examples as the folder reader."""


import pytest

from tfcyclegan.config import DataConfig
from tfcyclegan.data import DataError, load_domains, utkface


@pytest.fixture(scope="module")
def sample(utkface_sample):  # the shared folder, see conftest.py
    return utkface_sample


@pytest.fixture(scope="module")
def prepared(sample, tmp_path_factory):
    import tensorflow_datasets as tfds

    import tfcyclegan.data.tfds  # noqa: F401 - registers "utk_face"

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = tfds.builder("utk_face", data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(sample)))
    return data_dir


def test_builder_as_tfds_users_expect(prepared):
    import tensorflow_datasets as tfds

    builder = tfds.builder("utk_face", data_dir=prepared)
    assert builder.is_prepared()
    splits = builder.info.splits
    assert splits["train"].num_examples + splits["test"].num_examples == 2991  # 2986 + 5 readable malformed
    assert builder.info.metadata["skipped"] == {"missing_label": 3, "not_an_image": 2}
    ex = next(iter(builder.as_dataset(split="test").take(1)))
    assert ex["image"].shape[-1] == 3 and ex["image"].dtype.name == "uint8"
    assert set(ex) == {"image", "age", "gender", "race", "filename", "md5", "height", "width"}


def test_same_examples_as_the_folder_reader(prepared, sample, tmp_path):
    from tfcyclegan.data import tfds as tfds_lib

    from_tfds, tfds_stats = tfds_lib.load_examples("utk_face", data_dir=prepared)
    from_folder, folder_stats = utkface.build_examples(sample, cache_dir=str(tmp_path))
    assert from_tfds == from_folder
    assert tfds_stats == folder_stats
    # And the same domains through load_domains, for a task and a custom filter.
    for extra in ({"task": "ethnicity"}, {"domain_a": "age:20-29,gender:1", "domain_b": "age:50-59,gender:1"}):
        d_tfds = load_domains(DataConfig(dataset="tfds", tfds_name="utk_face", data_dir=prepared, **extra))
        d_dir = load_domains(DataConfig(dataset="utkface", data_dir=str(sample), **extra), cache_dir=str(tmp_path))
        assert (d_tfds.a, d_tfds.b) == (d_dir.a, d_dir.b)
        assert d_tfds.stats["domains"] == d_dir.stats["domains"]
        assert d_tfds.stats["skipped"] == d_dir.stats["skipped"]


def test_unprepared_utk_face_says_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match=r"not prepared(.|\n)*manual_dir"):
        load_domains(DataConfig(dataset="tfds", tfds_name="utk_face", data_dir=str(tmp_path)))
