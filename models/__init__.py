"""Transfer learning for fairgate: data -> fine-tune -> evaluate -> ONNX export -> model store.

The core is generic over single-label and multi-label classification so the toxicity
guard (``fairgate.models.guard``) reuses it. Importing this package is cheap: torch,
transformers, optimum and bentoml are imported inside the functions that need them.
"""

from fairgate.models.card import render_model_card
from fairgate.models.classifier import (
    DEFAULT_CLASSIFIER_NAME,
    BuildResult,
    ClassifierBuildConfig,
    build_classifier,
    evaluate_model_directory,
    load_identity_data,
)
from fairgate.models.datasets import (
    DataSplits,
    LabelledData,
    bundled_data_path,
    fingerprint_records,
    load_labelled_data,
    split_data,
)
from fairgate.models.encoder import EncoderSource, load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.errors import (
    DataError,
    DeployGateError,
    EncoderSourceError,
    ExportParityError,
    FairgateModelError,
    QuantizationError,
    StoreError,
)
from fairgate.models.evaluation import (
    check_deploy_gate,
    classification_metrics,
    group_metrics,
    probabilities,
)
from fairgate.models.export import (
    ParityReport,
    check_parity,
    detect_quantization_target,
    export_model_directory,
    read_manifest,
    write_int8_variant,
    write_manifest,
)
from fairgate.models.finetune import (
    FinetuneConfig,
    FinetuneResult,
    finetune,
    freeze_parameters,
    layerwise_parameter_groups,
    predict_logits,
    seed_everything,
)
from fairgate.models.static_int8 import StaticQuantization, calibration_fingerprint
from fairgate.models.store import (
    StoredModel,
    get_stored_model,
    json_safe,
    list_stored_models,
    model_exists,
    save_model_directory,
)

__all__ = [
    "DEFAULT_CLASSIFIER_NAME",
    "BuildResult",
    "ClassifierBuildConfig",
    "DataError",
    "DataSplits",
    "DeployGateError",
    "EncoderSource",
    "EncoderSourceError",
    "ExportParityError",
    "FairgateModelError",
    "FinetuneConfig",
    "FinetuneResult",
    "LabelledData",
    "ParityReport",
    "QuantizationError",
    "StaticQuantization",
    "StoreError",
    "StoredModel",
    "build_classifier",
    "bundled_data_path",
    "calibration_fingerprint",
    "check_deploy_gate",
    "check_parity",
    "classification_metrics",
    "detect_quantization_target",
    "evaluate_model_directory",
    "export_model_directory",
    "finetune",
    "fingerprint_records",
    "freeze_parameters",
    "get_stored_model",
    "group_metrics",
    "json_safe",
    "layerwise_parameter_groups",
    "list_stored_models",
    "load_identity_data",
    "load_labelled_data",
    "load_sequence_classifier",
    "load_tokenizer",
    "model_exists",
    "predict_logits",
    "probabilities",
    "read_manifest",
    "render_model_card",
    "resolve_encoder",
    "save_model_directory",
    "seed_everything",
    "split_data",
    "write_int8_variant",
    "write_manifest",
]
