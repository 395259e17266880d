"""VAT + conditional entropy minimisation (Grandvalet & Bengio 2005; S4L Sections 3.2, 4.2).

    L = w_sup * L_l + w_u * (w_vat * L_vat + w_entmin * L_entmin)
    L_entmin = mean over the unlabeled batch of the prediction entropy -sum_y p log p

EntMin alone lets the network become confident by scaling its last layer, so the paper only
uses it together with VAT, which keeps predictions locally smooth. The loss is `vat`'s; this
method only differs in accepting w_entmin > 0 (the grid is {0, 0.03, 0.1, 0.3, 1}).
"""

from __future__ import annotations

from .base import Method
from .vat import vat_entmin_loss

METHOD = Method(name="vat_entmin", loss=vat_entmin_loss, uses_unlabeled=True)
