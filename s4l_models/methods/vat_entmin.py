"""VAT + conditional entropy minimisation (Grandvalet & Bengio 2005; S4L Sections 3.2, 4.2).

    L = w_sup * L_l + w_u * (w_vat * L_vat + w_entmin * L_entmin)
    L_entmin = mean over VAT's batch of the prediction entropy -sum_y p log p

VAT's batch is the labeled and unlabeled clean views together with `vat_on_labeled` (default,
as the released config/vat_entmin.sh with --apply_vat_to_labeled), else the unlabeled batch.
EntMin alone lets the network become confident by scaling its last layer, so the paper only
uses it together with VAT, which keeps predictions locally smooth. The loss is `vat`'s (see
vat.py for L_vat, its units and eps_vat's default); this method only differs in accepting
w_entmin > 0 (the grid is {0, 0.03, 0.1, 0.3, 1}; vat_entmin.sh uses 1.0 with eps 40).
"""

from __future__ import annotations

from .base import Method
from .vat import vat_entmin_loss

METHOD = Method(name="vat_entmin", loss=vat_entmin_loss, uses_unlabeled=True)
