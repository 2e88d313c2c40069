"""Students made by structured pruning of a teacher, then distilled from it (Zhang et al., "Towards the Law of
Capacity Gap in Distilling Language Models", arXiv 2311.07052, Sec. 3; Minitron, Muralidharan et al. 2024,
arXiv 2407.14679), for the Llama family (Llama, Mistral, Qwen2, Qwen3; grouped-query attention), GPT-NeoX and
GPT-2 (``distlaw.lab.prunable`` says where each keeps its weights).

Width pruning keeps whole key/value groups with their query heads, FFN neurons and a hidden dimension shared by
all layers, ranked by ``importance`` (mask gradients or activations); depth pruning drops whole layers
(``depth``). Where the masks of the mask-gradient importance act, and why the pruned model is exact:

- head h of layer l scales that head's output before the attention output projection (removing it drops its
  q rows and the projection's columns; a key/value group goes with all of its query heads, so its k/v rows
  are then read by no one);
- neuron n of layer l scales its activation before the FFN output projection (drops its input rows, a column);
- hidden unit j scales every write to the residual stream: the token (and position) embeddings and the output
  of every attention and FFN block. A masked unit is then exactly zero in the residual stream, so every read of
  it (q/k/v/FFN input columns, norm gains, the LM head) sees zero. With RMSNorm the only read that does not
  vanish is the mean of squares over d_model, which the pruned model takes over d' < d units: multiplying the
  norm gains by sqrt(d/d') and the norm's epsilon by d/d' makes the pruned model compute exactly what the
  masked one did (Qwen3's per-head q/k norms share that epsilon: its q/k projections are scaled by sqrt(d/d')
  to keep them exact too).
- LayerNorm (GPT-2, GPT-NeoX) subtracts the mean over d_model, and a masked unit's zero counts in it, so no
  rescaling makes hidden-dimension pruning exact there. distlaw does what Minitron does: it slices the norms'
  gains and biases to the kept units and leaves the epsilon, so the pruned model normalises over its own d'
  units; heads and neurons are removed exactly, as everywhere, and the distillation that follows repairs the
  rest.
"""

from distlaw.lab.pruned import FORMAT, RECORD, check_request, pruned_shape
from distlaw.lab.pruning.checkpoint import prune_checkpoint
from distlaw.lab.pruning.decoder import Decoder, Selection, cut, everything
from distlaw.lab.pruning.depth import drop_layers, layer_importance, least_important, skipped
from distlaw.lab.pruning.importance import Importance, importance_scores, masked, next_token_loss
from distlaw.lab.pruning.width import prune_model, select

__all__ = ["FORMAT", "RECORD", "Decoder", "Importance", "Selection", "check_request", "cut", "drop_layers", "everything", "importance_scores",
           "layer_importance", "least_important", "masked", "next_token_loss", "prune_checkpoint", "prune_model", "pruned_shape", "select",
           "skipped"]
