"""An independent, literal re-statement of the released ComP evaluation forward, written
from the released code's equations as plain tensor functions over a `state_dict` with the *released*
parameter names. It exists only to check `reference_compat=True` of the converted model against it; it is
not used by the package.
"""

import torch
import torch.nn.functional as F


def released_forward(state, audio, text, video, input_mask, umask, num_heads, lam, first_stage=False):
    """Released `ComP.forward` in eval mode. Inputs are batch-major and padded to the released `seq_len`:
    features `[B, L, d_m]`, `input_mask` `[B, L, 3]`, `umask` `[B, L]`. Returns (out, out_a, out_t, out_v)."""

    def lin(x, name):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    def mlp(x, name):
        return lin(F.gelu(lin(x, f"{name}.fc1")), f"{name}.fc2")

    batch, length = umask.shape
    mask = input_mask.clone()
    mask[umask == 0] = 0
    keymask = {m: mask[:, :, i].bool() for i, m in enumerate("atv")}
    x_in = {"a": audio, "t": text, "v": video}
    proj = {m: lin(x_in[m], f"{m}_in_proj.0") for m in "atv"}
    shared = {m: mlp(proj[m], f"shared_enc_{m}") for m in "atv"}
    dim = shared["a"].shape[-1]
    head_dim = dim // num_heads

    def attention(x, name, keys):
        def split(t):
            return t.reshape(batch, length, num_heads, head_dim).permute(0, 2, 1, 3)

        q, k, v = split(lin(x, f"{name}.q")), split(lin(x, f"{name}.k")), split(lin(x, f"{name}.v"))
        q = q * head_dim**-0.5
        scores = q.float() @ k.float().transpose(-2, -1)
        probs = scores.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(dim=-1)
        probs = torch.where(torch.isnan(probs), torch.zeros_like(probs), probs)
        out = (probs @ v).transpose(1, 2).reshape(batch, length, dim)
        return out + mlp(out, f"{name}.mlp")

    n_layers = len({k.split(".")[2] for k in state if k.startswith("block1.blocks.")})

    def block(x, stage, m):
        for i in range(n_layers):
            x = x + attention(x, f"block{stage}.blocks.{i}.Transformer_{m}", keymask[m])
        return x

    def prompt_former(x, name, m, prototypes=None):
        if prototypes is None:
            prototypes = mlp(x.permute(0, 2, 1), f"{name}.proj_n").permute(0, 2, 1)
        n_proto = prototypes.shape[1]
        flat_x = x.reshape(-1, dim)
        flat_p = prototypes.reshape(-1, dim)
        cos = (flat_x / flat_x.norm(dim=1, keepdim=True)) @ (flat_p / flat_p.norm(dim=1, keepdim=True)).T
        # the released mask: ordered (utterance, dialogue) although the rows are (dialogue, utterance)
        mask_lb = mask[:, :, "atv".index(m)].transpose(0, 1).reshape(-1)
        cos = cos + ((1 - mask_lb) * -10000.0)[:, None].expand(-1, n_proto * batch)
        weights = cos.softmax(dim=1)
        aggregated = (weights @ flat_p).reshape(batch, -1, dim)
        return mlp(aggregated, f"{name}.proj_d") + lin(x, f"{name}.proj_prompt"), prototypes

    if first_stage:
        z = {m: block(block(shared[m], 1, m), 2, m) for m in "atv"}
        outs = {m: lin(z[m], f"nlp_head_{m}") for m in "atv"}
        joint = torch.cat([z[m] * mask[:, :, i : i + 1] for i, m in enumerate("atv")], dim=-1)
    else:
        p0, protos = {}, {}
        for m in "atv":
            p0[m], protos[m] = prompt_former(shared[m], f"prop_former_{m}_1", m)
        s1 = {
            "a": lin(torch.cat([shared["a"], p0["t"], p0["v"]], -1), "prop_proj_a_1"),
            "t": lin(torch.cat([shared["t"], p0["a"], p0["v"]], -1), "prop_proj_t_1"),
            "v": lin(torch.cat([shared["v"], p0["a"], p0["t"]], -1), "prop_proj_v_1"),
        }
        y = {m: mlp(block(s1[m], 1, m), f"prop_proj_rev_{m}_1") for m in "atv"}
        p = y["a"].shape[-1] - dim
        p //= 2
        s2 = {m: y[m][..., :dim] for m in "atv"}
        recv = {
            "a": {"t": y["a"][..., dim : dim + p], "v": y["a"][..., dim + p :]},
            "t": {"a": y["t"][..., dim : dim + p], "v": y["t"][..., dim + p :]},
            "v": {"a": y["v"][..., dim : dim + p], "t": y["v"][..., dim + p :]},
        }
        p1 = {m: prompt_former(s2[m], f"prop_former_{m}_2", m, protos[m])[0] for m in "atv"}
        z = {}
        for m, (o1, o2) in {"a": ("t", "v"), "t": ("a", "v"), "v": ("a", "t")}.items():
            q1 = lam * recv[m][o1] + (1 - lam) * p1[o1]
            q2 = lam * recv[m][o2] + (1 - lam) * p1[o2]
            z[m] = block(lin(torch.cat([s2[m], q1, q2], -1), f"prop_proj_{m}_2"), 2, m)
        outs = {m: lin(z[m], f"nlp_head_{m}") for m in "atv"}
        weights = mlp(torch.cat([z["a"], z["t"], z["v"]], -1), "router").softmax(-1)
        joint = torch.cat([weights[..., i : i + 1] * z[m] for i, m in enumerate("atv")], dim=-1)
    hidden = joint + F.relu(lin(joint, "proj1"))
    return lin(hidden, "nlp_head"), outs["a"], outs["t"], outs["v"]
