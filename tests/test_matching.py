"""``fusable_adapter_config``: a new adapter reads what the saved adapters it will be fused with read."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter_fusion import AdapterConfig, FusionConfig
from adapter_fusion.models import AdapterModel, fusable_adapter_config, save_adapter
from adapter_fusion.models.fusion_model import FusionModel
from conftest import batch_for


@pytest.fixture
def saved(tiny_bert_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Tiny-BERT adapters saved with each input mode, plus a parallel one."""
    configs = {
        "reads_output": AdapterConfig(bottleneck_size=4, original_ln_before=False),
        "reads_norm": AdapterConfig(bottleneck_size=4, original_ln_before=True),
        "parallel": AdapterConfig(bottleneck_size=4, placement="parallel"),
    }
    model = AdapterModel.from_pretrained(str(tiny_bert_dir))
    for name, config in configs.items():
        model.add_adapter(name, config, activate=False)
    return {name: save_adapter(model, name, tmp_path / name) for name in configs}


@pytest.mark.parametrize("source, expected", [("reads_output", False), ("reads_norm", True)])
def test_the_new_adapter_reads_what_its_sources_read_and_fuses_with_them(
    saved: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path, source: str, expected: bool
) -> None:
    config = fusable_adapter_config([saved[source], saved["parallel"]], bottleneck_size=8)
    assert config.original_ln_before is expected and config.bottleneck_size == 8
    model = AdapterModel.from_pretrained(str(tiny_bert_dir))
    model.add_adapter("new", config)
    new = save_adapter(model, "new", tmp_path / "new")
    fused = FusionModel.from_adapters([saved[source], new], FusionConfig(fusion_method="attention"),
                                      model=str(tiny_bert_dir))  # fmt: skip
    assert fused.base(**batch_for(fused.base)).last_hidden_state.isfinite().all()  # the hooks run the fusion


def test_the_default_placement_would_not_fuse_with_adapters_saved_reading_the_output(
    saved: dict[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """Why the helper exists: the pfeiffer default reads the normalised sum, which older adapters do not."""
    model = AdapterModel.from_pretrained(str(tiny_bert_dir))
    model.add_adapter("new", AdapterConfig(bottleneck_size=4))
    new = save_adapter(model, "new", tmp_path / "new")
    with pytest.raises(ValueError, match="must agree on original_ln_before"):
        FusionModel.from_adapters([saved["reads_output"], new], model=str(tiny_bert_dir))


def test_only_parallel_sources_or_a_parallel_target_leave_the_config_as_given(saved: dict[str, Path]) -> None:
    assert fusable_adapter_config([saved["parallel"]]) == AdapterConfig()
    assert fusable_adapter_config([saved["reads_output"]], placement="parallel") == AdapterConfig(placement="parallel")


@pytest.mark.parametrize("sources, fields, error, message", [
    (["reads_output", "reads_norm"], {}, ValueError, "read different inputs"),
    (["reads_output"], {"original_ln_before": True}, ValueError, "original_ln_before=True would read another input"),
    ("reads_output", {}, TypeError, "must be a list"),
])
def test_bad_requests_are_refused(
    saved: dict[str, Path], sources: list[str] | str, fields: dict, error: type, message: str
) -> None:
    paths = [saved[name] for name in sources] if isinstance(sources, list) else str(saved[sources])
    with pytest.raises(error, match=message):
        fusable_adapter_config(paths, **fields)
