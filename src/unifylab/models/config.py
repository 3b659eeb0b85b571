"""The unified transformer's configuration: `ModelArgs` (the architecture a training config's `model:` chooses) and
`ModelConfig` (those plus what the tokenizers decide), validated when they load."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unifylab.models.flow import PREDICT, SOLVER, STEPS
from unifylab.tokenize.text import SPECIAL_TOKENS

FLOW_FIELDS = (
    "flow_weight",
    "flow_steps",
    "flow_solver",
    "flow_guidance",
    "flow_predict",
)  # settings of image_output 'flow' only


class ModelArgs(BaseModel):
    """The architecture a training config chooses (`model:` in config.yaml), validated when it loads; ModelConfig
    adds what the tokenizers decide."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(128, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    mlp_hidden: int | None = Field(None, description="SwiGLU width; default 8/3 * dim rounded up to 16")
    max_len: int = Field(256, ge=2)
    backbone: Literal["shared", "fork", "mot"] = "shared"
    fork_layer: int | None = Field(None, description="fork: first layer that is duplicated per branch")
    output_heads: Literal["shared", "split"] = "shared"
    rope: Literal["1d", "2d"] = "1d"
    qk_norm: bool = Field(
        False,
        description="RMS-normalise each head's queries and keys (learned gain) before the rotary step, which bounds "
        "the attention logits (as in the small-transformer speed records and OLMo 2)",
    )
    image_pos: bool = Field(
        False,
        description="add a learned (row, column) embedding (zero at init) to every image "
        "input token, so each carries the cell it shows (rotary positions alone give offsets)",
    )
    image_output: Literal["tokens", "flow"] = Field(
        "tokens",
        description="draw images as discrete tokens (next-token loss) or as continuous patches by flow matching "
        "inside the sequence (needs a continuous generation tokenizer: tokenizers.image patch)",
    )
    flow_weight: float | None = Field(
        None, gt=0, description="flow: weight of an image patch's velocity loss against a text token's (None: 1)"
    )
    flow_steps: int | None = Field(None, ge=1, description="flow: integration steps when sampling (None: 20)")
    flow_solver: Literal["euler", "heun"] | None = Field(None, description="flow: ODE solver (None: heun)")
    flow_guidance: float | None = Field(
        None,
        ge=0,
        description="flow: the classifier-free guidance scale the model draws with unless an evaluation names one "
        "(None: 1, unguided; needs data.cfg_dropout > 0)",
    )
    flow_predict: Literal["image", "velocity"] | None = Field(
        None, description="flow: what the head predicts, the clean patches or the velocity (None: image)"
    )
    init_std: float | None = Field(
        None,
        gt=0,
        description="None: scaled to width (embeddings N(0, 1), each "
        "Linear N(0, 1/fan_in)); a number: that std everywhere (0.02 is GPT-2's, tuned for "
        "width 768)",
    )

    @model_validator(mode="after")
    def _check_args(self) -> ModelArgs:
        if self.dim % self.heads or (self.dim // self.heads) % 8:
            raise ValueError(f"dim {self.dim} / heads {self.heads} must give a head width that is a multiple of 8")
        if self.backbone == "fork":
            if self.fork_layer is None or not 0 <= self.fork_layer <= self.layers:
                raise ValueError(f"backbone 'fork' needs fork_layer in 0..{self.layers}, got {self.fork_layer}")
        elif self.fork_layer is not None:
            raise ValueError(f"fork_layer is only used with backbone 'fork' (backbone is {self.backbone!r})")
        if self.image_output == "tokens":
            given = [k for k in FLOW_FIELDS if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} apply to image_output 'flow' only; drop them or set model.image_output=flow"
                )
        return self

    @property
    def flow_sampler(self) -> tuple[int, str]:
        """flow: the integration steps and solver a sample uses unless told otherwise (the config's, else the
        defaults of `models.flow`)."""
        return self.flow_steps or STEPS, self.flow_solver or SOLVER

    @property
    def guidance(self) -> float:
        """The guidance scale the model draws with unless told otherwise (flow_guidance, else 1)."""
        return 1.0 if self.flow_guidance is None else self.flow_guidance

    @property
    def predicts(self) -> str:
        """flow: what the head predicts ('image' or 'velocity'), the config's or the default."""
        return self.flow_predict or PREDICT

    @property
    def trunk_layers(self) -> int:
        """Layers every token goes through (below the fork; all of them unless the backbone forks)."""
        return self.fork_layer if self.backbone == "fork" else self.layers


class ModelConfig(ModelArgs):
    """Architecture of a UnifiedTransformer (saved as config.json): the chosen ModelArgs and the vocabularies and
    image grids of its tokenizers."""

    n_text: int = Field(ge=len(SPECIAL_TOKENS), description="text vocabulary (ids 0..n_text-1)")
    n_image: int = Field(ge=0, description="image codes (ids n_text..n_text+n_image-1); 0 when none is read or drawn")
    flow_dim: int | None = Field(None, description="flow: width of an output image's continuous patches")
    image_grid: tuple[int, int] = Field(description="image tokens per side (rows, cols) of generated images")
    image_input: Literal["tokens", "patch"] = "tokens"
    patch_dim: int | None = Field(None, description="patch: width of the continuous input features")
    input_grid: tuple[int, int] | None = Field(
        None, description="token grid of understanding inputs when they differ from image_grid (patch input)"
    )
    rope_theta: float = 10000.0

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.image_input == "patch" and not self.patch_dim:
            raise ValueError("image_input 'patch' needs patch_dim (the patch tokenizer's feature_dim)")
        if self.image_input == "patch" and self.image_pos and not self.input_grid:
            raise ValueError("image_input 'patch' with image_pos needs input_grid (the patch tokenizer's token_grid)")
        if self.image_output == "flow" and not self.flow_dim:
            raise ValueError("image_output 'flow' needs flow_dim (the generation tokenizer's feature_dim)")
        if self.image_output == "tokens" and self.n_image < 1:
            raise ValueError("image_output 'tokens' needs n_image >= 1 (the generation tokenizer's vocabulary)")
        return self

    @property
    def vocab_size(self) -> int:
        return self.n_text + self.n_image

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 16 * math.ceil(8 * self.dim / 3 / 16)

    @property
    def pos_cells(self) -> int:
        """Rows of the row and column embedding tables: the longest side of any image grid the model reads."""
        return max(*self.image_grid, *(self.input_grid or self.image_grid))

    @property
    def image_tokens(self) -> int:
        return self.image_grid[0] * self.image_grid[1]
