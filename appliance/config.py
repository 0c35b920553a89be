"""One typed configuration: workspace/config.toml, then APPLIANCE__SECTION__KEY variables, then --set on the CLI.

    [llm]
    n_ctx = 4096            # APPLIANCE__LLM__N_CTX=2048 or `appliance --set llm.n_ctx=2048 ...` override it

Unknown sections or keys are refused, so a typo never silently does nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from appliance.choices import (SDG_KINDS, Chunker, ContextOrder, Precision, RetrievalMode, Rerank, SDGKind, Strategy,
                               TrainBackend)
from appliance.errors import ConfigError
from appliance.models import DEFAULT_MODELS_DIR

__all__ = ["Config", "ConfigError", "load_config", "render_toml"]

ENV_PREFIX = "APPLIANCE__"


@dataclass
class ModelsConfig:
    """Which models from models/manifest.toml the appliance uses."""

    dir: str = ""                           # empty: models/ of this checkout
    generator: str = "generator"            # a model name, or a role resolved to the manifest's default
    embedder: str = "embedder"


@dataclass
class LLMConfig:
    """llama.cpp generation settings."""

    n_ctx: int = 4096
    n_threads: int = 0                      # 0: all cores
    n_batch: int = 512
    temperature: float = 0.0                # 0: greedy, deterministic
    top_p: float = 1.0
    max_tokens: int = 128                   # answers are short; judges and syntheses set their own budgets
    seed: int = 0


@dataclass
class IngestConfig:
    """How documents are parsed and cut into chunks (sizes in the embedder's word pieces)."""

    chunker: Chunker = "structure"          # structure | window
    max_tokens: int = 200                   # chunk body; the section prefix is added on top (MiniLM reads 256)
    min_tokens: int = 48                    # structure: a section smaller than this is merged with the next
    overlap_tokens: int = 40                # structure: a chunk cut for size starts with the previous one's tail
    window_tokens: int = 200                # window: size of each window
    window_overlap: int = 40                # window: word pieces shared by consecutive windows
    section_prefix: bool = True             # embed and index "section path" + text, so headings count
    embed_window: int = 0                   # structure: 0: a chunk fits the embedder's window and has one vector;
                                            # N: chunks up to max_tokens, embedded in windows of N word pieces
                                            # (half overlapping), a chunk scored by its best window (parent/child)
    pdf_tables: bool = True                 # PDFs: ruled tables recovered with pdfplumber, rows with their header
    max_file_mb: int = 50                   # larger files are skipped and reported
    max_unzipped_mb: int = 200              # DOCX/PPTX/XLSX: refuse more uncompressed bytes than this...
    max_zip_ratio: int = 100                # ...or a compression ratio above this (zip bombs)


@dataclass
class RetrievalConfig:
    """How questions find chunks."""

    mode: RetrievalMode = "hybrid"          # vector | fts | hybrid (reciprocal rank fusion)
    k: int = 5
    candidates: int = 50                    # per list, before fusion
    rrf_k: int = 60
    fts_weight: float = 2.0                 # hybrid: weight of the full-text list in the fusion
    vector_weight: float = 1.0              # hybrid: weight of the vector list in the fusion
    mmr_lambda: float = 0.85                # 1: rank by relevance only; lower trades relevance for diversity (MMR)
    max_per_doc: int = 0                    # 0: no cap; else at most this many chunks of one document in the top k
    rerank: Rerank = "none"                 # none | sentence (MiniLM max-similarity over the chunk's sentences)
    second_hop: bool = False                # hybrid: identifiers in the top hit that the query lacks are searched
                                            # for (BM25) and what they find joins the hits after the first two
    embed_batch: int = 64


@dataclass
class EvalConfig:
    """How `appliance eval answers` builds contexts, runs strategies and judges (and `compare` tests)."""

    context_k: int = 3                      # rag: retrieved chunks given to the model
    context_order: ContextOrder = "best-last"  # rag: best-last puts the best passage next to the question
    context_max_tokens: int = 1200          # rag and oracle: passages are cut to this many generator tokens
    samples: int = 5                        # best-of-n and self-consistency: answers sampled per question
    sample_temperature: float = 0.7
    judge_model: str = "generator"          # a model name or role from models/manifest.toml
    judge_repeats: int = 1                  # > 1: the judge is asked again (other seeds); agreement is reported
    bootstrap_resamples: int = 10000
    alpha: float = 0.05                     # significance level of `compare`


@dataclass
class SDGConfig:
    """Synthetic data (`appliance sdg ...`): which pairs are made from the indexed chunks, how they are filtered, and
    how training examples, datasets and the abstention probe are cut."""

    kinds: list[SDGKind] = field(default_factory=lambda: list(SDG_KINDS))
    per_chunk: int = 4                      # anchors (candidate pairs) taken from one chunk, each its own evidence
    batch_chunks: int = 32                  # questions are written for this many chunks, then filtered (prompt reuse)
    target_pairs: int = 0                   # training + validation pairs to keep, divided by their shares (0: all chunks)
    free_share: float = 0.1                 # share of chunks whose pair the model writes whole (free-form)
    attempts: int = 3                       # a question that does not parse is asked again this often, then a failure
    rewrites: int = 1                       # another question for an anchor whose question misframed it, was not
                                            # findable or not answered back (the anchor stays good); each a candidate
    min_question_words: int = 5
    max_question_words: int = 30
    max_answer_words: int = 60
    grounding_min: float = 0.6              # share of the question's content words found in its evidence and section
    duplicate_jaccard: float = 0.7          # MinHash Jaccard (question word 2-grams) above which pairs are duplicates
    golden_ngram_jaccard: float = 0.5       # contamination: word 3-gram Jaccard with any golden question
    golden_cosine: float = 0.9              # contamination: MiniLM cosine with any golden question
    withheld_share: float = 0.12            # training examples whose evidence is withheld (target: the refusal)
    fewer_passages_share: float = 0.0       # pairs whose examples show 1..eval.context_k-1 passages, not context_k
    validation_share: float = 0.1           # documents whose pairs go to validation
    probe_share: float = 0.2                # documents held out of training for the abstention probe
    probe_questions: int = 120              # probe questions (each asked with evidence withheld and present)
    probe_validation: bool = True           # the probe also asks the validation documents' pairs (never trained on)
    judge_model: str = ""                   # free-form pairs: a judge model other than the generator ("" none)
    seed: int = 0


@dataclass
class TrainConfig:
    """LoRA adaptation (`appliance train`): one recipe per backend (appliance/training/cpu.py, gpu.py) reads this.

        appliance train --dataset ID --set train.max_epochs=1 --set train.lora_r=8
    """

    backend: TrainBackend = "auto"          # auto: gpu (Unsloth QLoRA) where CUDA is present, else cpu (peft + TRL)
    precision: Precision = "auto"           # cpu: bf16 autocast where the CPU has native bf16 (AMX / AVX512-BF16)
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"      # every linear projection of the blocks
    batch_size: int = 1                     # examples per step (one: RAG prompts differ in length, no padding waste)
    grad_accumulation: int = 4              # steps per optimizer update
    max_epochs: int = 3                     # at most; training stops earlier when validation loss stops improving
    patience: int = 3                       # evaluations without a lower validation loss before it stops
    evals_per_epoch: int = 3                # validation loss (and a checkpoint) this often per epoch
    eval_examples: int = 48                 # validation examples scored at each evaluation (0: all)
    max_steps: int = 0                      # optimizer updates at most (0: no cap; for quick runs)
    max_length: int = 0                     # tokens per example (0: the longest example, so no prompt is cut)
    warmup_ratio: float = 0.05
    gradient_checkpointing: bool = False    # less memory, about 1.5x slower
    seed: int = 0


@dataclass
class LadderConfig:
    """`appliance ladder` and the decision record: the rules' thresholds (docs/LADDER.md) and the ROI worksheet's
    inputs, which only the user knows (volume, labour and hardware prices).

        appliance ladder --set ladder.questions_per_month=20000 --set ladder.hardware_cost_per_hour=1.2
    """

    strategies: list[Strategy] = field(default_factory=lambda: ["best-of-n", "self-consistency"])   # tried on failures
    recall_min: float = 0.8                 # gold-evidence recall@k below this: fix retrieval first (the seeds' rule)
    target_accuracy: float = 0.9            # rag accuracy (answerable) and abstention at or above this: ship RAG as is
    scaling_recovered_min: float = 0.5      # share of the failing questions a strategy must get right to be chosen
    reviewed_pairs_min: int = 200           # reviewed pairs before fine-tuning may be recommended (the seeds' rule)
    min_questions: int = 10                 # fewer golden questions than this: insufficient evidence
    max_regressions: int = 0                # questions right before and wrong after adaptation that are tolerated
    judge_crosscheck: int = 60              # check-settled answers the judge model is asked about too (`eval
                                            # crosscheck`), so the two layers' agreement is measured (0: not asked)
    questions_per_month: int = 10000        # ROI: answers the deployment serves a month
    hardware_cost_per_hour: float = 1.0     # ROI: cost of an hour of the machine that answers and trains
    labour_cost_per_hour: float = 60.0      # ROI: cost of an hour of a reviewer's time
    review_seconds_per_pair: float = 30.0   # ROI: a reviewer's time per synthetic pair
    adapter_scales: list[float] = field(default_factory=lambda: [1.0, 0.5])   # strengths the adapter is asked the
                                            # probe at (1: as trained); the golden set is asked at the one with the
                                            # most probe questions right, ties to the earlier (docs/ADAPTATION.md)


@dataclass
class AccessConfig:
    """Who may see which access groups (appliance/access.py): only a root-owned mapping file grants groups to users
    other than root; naming it here cannot make a file count that root does not own."""

    map_file: str = "/etc/appliance/access.toml"


@dataclass
class Config:
    """Everything configurable, in one object."""

    models: ModelsConfig = field(default_factory=ModelsConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sdg: SDGConfig = field(default_factory=SDGConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    access: AccessConfig = field(default_factory=AccessConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values that are the right type but make no sense (choices are checked by their Literal type)."""
        for section in fields(self):
            obj = getattr(self, section.name)
            for f, typ in _field_types(type(obj)).items():
                _coerce(section.name, f, typ, getattr(obj, f))
        if self.eval.samples < 1 or self.eval.judge_repeats < 1 or self.eval.context_k < 1:
            raise ConfigError("eval.samples, eval.judge_repeats and eval.context_k must be at least 1")
        shares = {"sdg.free_share": self.sdg.free_share, "sdg.withheld_share": self.sdg.withheld_share,
                  "sdg.fewer_passages_share": self.sdg.fewer_passages_share,
                  "sdg.validation_share": self.sdg.validation_share, "sdg.probe_share": self.sdg.probe_share}
        for key, value in shares.items():
            if not 0 <= value < 1:
                raise ConfigError(f"{key} = {value}: a share between 0 and 1 (1 excluded)")
        if self.sdg.validation_share + self.sdg.probe_share >= 1:
            raise ConfigError("sdg.validation_share + sdg.probe_share leave no documents for training")
        if self.sdg.attempts < 1 or min(self.sdg.rewrites, self.sdg.target_pairs, self.sdg.probe_questions) < 0:
            raise ConfigError("sdg.attempts must be at least 1; sdg.rewrites, sdg.target_pairs and "
                              "sdg.probe_questions not negative")
        t = self.train
        if min(t.lora_r, t.lora_alpha, t.batch_size, t.grad_accumulation, t.max_epochs, t.patience,
               t.evals_per_epoch) < 1 or t.learning_rate <= 0 or min(t.max_steps, t.max_length, t.eval_examples) < 0:
            raise ConfigError("train: lora_r, lora_alpha, batch_size, grad_accumulation, max_epochs, patience and "
                              "evals_per_epoch must be at least 1, learning_rate above 0, the rest not negative")
        if not 0 <= t.lora_dropout < 1 or not 0 <= t.warmup_ratio < 1:
            raise ConfigError("train.lora_dropout and train.warmup_ratio are shares between 0 and 1")
        lad = self.ladder
        if not (0 < lad.recall_min <= 1 and 0 < lad.target_accuracy <= 1 and 0 < lad.scaling_recovered_min <= 1):
            raise ConfigError("ladder.recall_min, ladder.target_accuracy and ladder.scaling_recovered_min are shares "
                              "above 0 and at most 1")
        if min(lad.reviewed_pairs_min, lad.min_questions, lad.max_regressions, lad.questions_per_month) < 0 or min(
                lad.hardware_cost_per_hour, lad.labour_cost_per_hour, lad.review_seconds_per_pair) < 0:
            raise ConfigError("ladder: counts and costs must not be negative")
        from appliance.llm import MAX_ADAPTER_SCALE

        if not lad.adapter_scales or not all(0 < x <= MAX_ADAPTER_SCALE for x in lad.adapter_scales):
            raise ConfigError(f"ladder.adapter_scales = {lad.adapter_scales}: one or more strengths above 0 and at "
                              f"most {MAX_ADAPTER_SCALE:g}")
        if not 0 <= self.ingest.window_overlap < self.ingest.window_tokens:
            raise ConfigError("ingest.window_overlap must be >= 0 and smaller than ingest.window_tokens")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_sha256(self, *sections: str) -> dict[str, str]:
        """sha256 of each named section's values: what a resumed job compares, so that a section added to the
        configuration later (or a change to one the job does not read) does not block resuming it."""
        return {s: section_sha256(dataclasses.asdict(getattr(self, s))) for s in sections}

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir) if self.models.dir else DEFAULT_MODELS_DIR


def section_sha256(values: dict[str, Any]) -> str:
    """The hash of one configuration section's values (as Config.section_sha256 and a stored config_json give)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(section: str, key: str, typ: Any, value: Any) -> Any:
    """`value` as type `typ` (int, float, str, bool, a Literal of choices, `X | None`, `list[X]`); strings from the
    environment or --set are parsed ('none' is None for optional keys, lists are comma-separated). Raises
    ConfigError naming the key."""
    name = f"{section}.{key}"
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return _coerce(section, key, inner[0], value)
    if origin is list:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(section, key, args[0] if args else str, v) for v in items]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} = {value!r}: choose one of {', '.join(map(str, args))}")
        return value
    if isinstance(value, str) and typ is not str:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        try:
            return typ(value)
        except ValueError:
            raise ConfigError(f"{name}: expected {_SCALARS.get(typ, typ.__name__)}, got {value!r}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {_SCALARS.get(typ, typ.__name__)}, got {value!r}")
    return value


def _apply(cfg: Config, section: str, key: str, value: Any, origin: str) -> None:
    sections = {f.name: f for f in fields(cfg)}
    if section not in sections:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(sections)})")
    obj = getattr(cfg, section)
    keys = _field_types(type(obj))
    if key not in keys:
        raise ConfigError(f"{origin}: unknown key {section}.{key} (known: {', '.join(keys)})")
    setattr(obj, key, _coerce(section, key, keys[key], value))


def load_config(path: Path | None, overrides: list[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (if it exists), then environment variables, then `section.key=value` overrides."""
    cfg = Config()
    if path is not None and path.is_file():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: {section} must be a [section]")
            for key, value in values.items():
                _apply(cfg, section, key, value, str(path))
    env = os.environ if environ is None else environ
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX):
            parts = name[len(ENV_PREFIX):].lower().split("__")
            if len(parts) != 2:
                raise ConfigError(f"${name}: expected {ENV_PREFIX}SECTION__KEY")
            _apply(cfg, parts[0], parts[1], value, f"${name}")
    for item in overrides or []:
        dotted, sep, value = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _apply(cfg, section, key, value.strip(), f"--set {item}")
    cfg.validate()
    return cfg


def render_toml(cfg: Config) -> str:
    """The configuration as TOML, every key written out (what `appliance init` puts in the workspace)."""
    out = ["# Appliance configuration. Override any key with APPLIANCE__SECTION__KEY or --set section.key=value.\n"]
    for section, values in cfg.to_dict().items():
        out.append(f"\n[{section}]\n")
        for key, value in values.items():
            if value is None:
                continue  # an optional key left unset: TOML has no null
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, list):
                text = "[" + ", ".join(json.dumps(v) for v in value) + "]"
            elif isinstance(value, str):
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            else:
                text = repr(value)
            out.append(f"{key} = {text}\n")
    return "".join(out)
