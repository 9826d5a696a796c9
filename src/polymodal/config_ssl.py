"""Config sections for the semi-supervised baselines (one section per method, as ``uda:``).

Kept apart from `polymodal.config` so each method's knobs sit next to one another; `Config` holds
one field per section, and unknown keys get the same one-line error. Defaults follow the methods'
reference implementations (google-research/fixmatch and mixmatch, the VAT and ICT papers); squared
errors between probability vectors are averaged over classes, as in those implementations, and
consistency weights ramp up linearly over the first ``rampup`` fraction of training.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SSL_METHODS = ("pi_model", "mean_teacher", "vat", "pseudo_label", "ict", "mixmatch", "fixmatch")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PiModelConfig(_Section):
    weight: float = Field(10.0, ge=0.0)  # max weight of the squared error between two views
    rampup: float = Field(0.4, ge=0.0, le=1.0)


class MeanTeacherConfig(_Section):
    weight: float = Field(50.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)
    ema: float = Field(0.999, ge=0.0, lt=1.0)  # teacher decay α


class VATConfig(_Section):
    eps: float = Field(2.0, gt=0.0)  # ε: L2 norm of the adversarial perturbation per example
    xi: float = Field(1e-6, gt=0.0)  # ξ: finite-difference step of the power iteration
    iterations: int = Field(1, ge=1)
    weight: float = Field(1.0, ge=0.0)  # α on the VAT term
    entmin: float = Field(1.0, ge=0.0)  # weight of entropy minimization (VAT + EntMin); 0 = plain VAT


class PseudoLabelConfig(_Section):
    threshold: float = Field(0.95, ge=0.0, lt=1.0)
    weight: float = Field(1.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)


class ICTConfig(_Section):
    weight: float = Field(50.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)
    alpha: float = Field(1.0, gt=0.0)  # λ ~ Beta(α, α)
    ema: float = Field(0.999, ge=0.0, lt=1.0)


class MixMatchConfig(_Section):
    T: float = Field(0.5, gt=0.0)  # sharpening temperature
    alpha: float = Field(0.75, gt=0.0)  # λ ~ Beta(α, α), λ' = max(λ, 1 − λ)
    K: int = Field(2, ge=1)  # augmentations averaged for the label guess
    weight: float = Field(100.0, ge=0.0)  # λ_U
    rampup: float = Field(0.4, ge=0.0, le=1.0)


class FixMatchConfig(_Section):
    threshold: float = Field(0.95, ge=0.0, lt=1.0)  # τ on the weak view's confidence
    weight: float = Field(1.0, ge=0.0)  # λ_u
