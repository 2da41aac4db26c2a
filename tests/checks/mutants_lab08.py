"""Mutants of Lab 8's solutions (the Vision Transformer): realistic wrong answers, each with what the self-check must
say. The documented mistakes of ``labsupport.checks.lab08.MISTAKES`` are run too (test_mutants)."""
from mutation import Mutant

LAB = "lab08"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {"patchify": ("patchify", "patchify"), "unpatchify": ("unpatchify", "unpatchify"),
         "add_cls_and_positions": ("add_cls_and_positions", "add_cls_and_positions"),
         "vit_forward": ("vit_forward", "vit_forward"), "cls_attention_map": ("cls_attention_map", "cls_attention_map")}

SIX = "x = images.reshape(B, C, H // p, p, W // p, p)"
PERM = "x = x.permute(0, 2, 4, 1, 3, 5)"
FLAT = "return x.reshape(B, (H // p) * (W // p), C * p * p)"
USIX = "x = patches.reshape(B, H // p, W // p, C, p, p)"
UPERM = "x = x.permute(0, 3, 1, 4, 2, 5)"
UFLAT = "return x.reshape(B, C, H, W)"
EXPAND = "cls = cls_token.expand(x.shape[0], -1, -1)"
CAT = "return torch.cat([cls, x], dim=1) + positions"
EMBED = "x = model.patch_embed(patchify(images, model.patch_size))"
TABLE_ROW = "positions = torch.cat([model.cls_position[0], model.positions.table()])"
ADD = "x = add_cls_and_positions(x, model.cls_token, positions)"
ENC = "h = model.encoder(x)"
HEAD = "return model.head(h[:, 0])"
MAP = "return weights.mean(dim=1)[:, 0, 1:].reshape(weights.shape[0], gh, gw)"


def drop(line: str) -> tuple[str, str]:
    """Remove a whole (indented) line of the solution."""
    return ("    " + line + "\n", "")


MUTANTS = [
    # patchify
    Mutant("patchify", "plain_reshape", ("plain reshape",), why="documented: strips instead of squares",
           replace=(drop(SIX), drop(PERM), (FLAT, "return images.reshape(B, (H // p) * (W // p), C * p * p)"))),
    Mutant("patchify", "column_major", ("column by column",), why="grid axes swapped",
           replace=((PERM, "x = x.permute(0, 4, 2, 1, 3, 5)"),)),
    Mutant("patchify", "pixels_transposed", ("inside each patch are transposed",), why="pixel axes swapped",
           replace=((PERM, "x = x.permute(0, 2, 4, 1, 5, 3)"),)),
    Mutant("patchify", "channel_last", ("channel-last",), why="wrong flattening order",
           replace=((PERM, "x = x.permute(0, 2, 4, 3, 5, 1)"),)),
    Mutant("patchify", "view_after_permute", ("`.view` cannot follow a transpose",), why="view on a permuted tensor",
           replace=((FLAT, FLAT.replace(".reshape(", ".view(")),)),
    Mutant("patchify", "patch_size_hard_coded", ("2x2 patches",), why="argument ignored for a default",
           replace=((SIX, "x = images.reshape(B, C, H // 2, 2, W // 2, 2)"),
                    (FLAT, "return x.reshape(B, (H // 2) * (W // 2), C * 2 * 2)"))),
    Mutant("patchify", "height_width_swapped", ("Height and width are swapped",),
           why="swapped arguments (non-square images)",
           replace=((SIX, "x = images.reshape(B, C, W // p, p, H // p, p)"),)),
    Mutant("patchify", "unfold_without_transpose", ("F.unfold returns (B, C*p*p, N)",), why="batched transpose",
           replace=(drop(SIX), drop(PERM), (FLAT, "return F.unfold(images, p, stride=p)"))),
    Mutant("patchify", "float32", ("dtype torch.float32; expected torch.float64",), why="dtype",
           replace=((SIX, "x = images.float().reshape(B, C, H // p, p, W // p, p)"),)),
    Mutant("patchify", "numpy_return", ("should be a torch.Tensor",), why="numpy vs torch return",
           replace=((FLAT, FLAT + ".numpy()"),)),
    Mutant("patchify", "unfold", why="another way", replace=(drop(SIX), drop(PERM), (
        FLAT, "return F.unfold(images, p, stride=p).transpose(1, 2)")),
           equivalent="F.unfold with kernel p and stride p lists each patch as (C, p, p), row-major: the same tensor"),
    Mutant("patchify", "minus_one", why="another way", replace=((FLAT, "return x.reshape(B, -1, C * p * p)"),),
           equivalent="-1 infers N = (H/p)(W/p)"),
    # unpatchify
    Mutant("unpatchify", "plain_reshape", ("plain reshape does not undo",), why="documented",
           replace=(drop(USIX), drop(UPERM), (UFLAT, "return patches.reshape(B, C, H, W)"))),
    Mutant("unpatchify", "grid_axes_swapped", ("grid axes come out swapped",), why="grid axes swapped",
           replace=((UPERM, "x = x.permute(0, 3, 2, 4, 1, 5)"),)),
    Mutant("unpatchify", "pixels_transposed", ("come out transposed",), why="pixel axes swapped",
           replace=((UPERM, "x = x.permute(0, 3, 1, 5, 2, 4)"),)),
    Mutant("unpatchify", "channel_last", ("channel-last",), why="wrong unflattening order",
           replace=((USIX, "x = patches.reshape(B, H // p, W // p, p, p, C)"),
                    (UPERM, "x = x.permute(0, 5, 1, 3, 2, 4)"))),
    Mutant("unpatchify", "grid_swapped", ("column by column",), why="swapped arguments (non-square images)",
           replace=((USIX, "x = patches.reshape(B, W // p, H // p, C, p, p)"),
                    (UPERM, "x = x.permute(0, 3, 2, 4, 1, 5)"))),
    Mutant("unpatchify", "view_after_permute", ("`.view` cannot follow a transpose",), why="view on a permuted tensor",
           replace=((UFLAT, "return x.view(B, C, H, W)"),)),
    Mutant("unpatchify", "one_channel", ("C = channels",), why="argument ignored for a default",
           replace=((USIX, "x = patches.reshape(B, H // p, W // p, 1, p, p)"),
                    (UFLAT, "return x.reshape(B, 1, H, W)"))),
    Mutant("unpatchify", "patch_size_hard_coded", ("use the patch_size argument",),
           why="argument ignored for a default",
           replace=((USIX, "x = patches.reshape(B, H // 2, W // 2, C, 2, 2)"),)),
    Mutant("unpatchify", "float32", ("dtype torch.float32; expected torch.float64",), why="dtype",
           replace=((UFLAT, "return x.reshape(B, C, H, W).float()"),)),
    Mutant("unpatchify", "fold", why="another way", replace=(drop(USIX), drop(UPERM), (
        UFLAT, "return F.fold(patches.transpose(1, 2), (H, W), p, stride=p)")),
           equivalent="F.fold is the inverse of F.unfold, whose patch order is patchify's"),
    Mutant("unpatchify", "contiguous_view", why="another way",
           replace=((UFLAT, "return x.contiguous().view(B, C, H, W)"),),
           equivalent=".contiguous().view() is .reshape()"),
    # add_cls_and_positions
    Mutant("add_cls_and_positions", "cls_last", ("appended at the end",), why="documented: wrong order",
           replace=((CAT, "return torch.cat([x, cls], dim=1) + positions"),)),
    Mutant("add_cls_and_positions", "no_positions", ("positions are not added",), why="step missing",
           replace=((CAT, "return torch.cat([cls, x], dim=1)"),)),
    Mutant("add_cls_and_positions", "cls_without_position", ("did not get its position",), why="off-by-one slice",
           replace=((CAT, "return torch.cat([cls, x + positions[1:]], dim=1)"),)),
    Mutant("add_cls_and_positions", "positions_shifted", ("shifted by one",), why="off-by-one slice",
           replace=((CAT, "return torch.cat([cls, x + positions[:-1]], dim=1)"),)),
    Mutant("add_cls_and_positions", "cls_added", ("must be prepended",), why="wrong operation",
           replace=((CAT, "return x + cls + positions[1:]"),)),
    Mutant("add_cls_and_positions", "not_expanded", ("cls_token.expand(x.shape[0], -1, -1)",), why="batched shapes",
           replace=((CAT, "return torch.cat([cls_token, x], dim=1) + positions"),)),
    Mutant("add_cls_and_positions", "expanded_to_tokens", ("cls_token.expand(x.shape[0], -1, -1)",),
           why="swapped sizes in an expand", replace=((EXPAND, "cls = cls_token.expand(x.shape[1], -1, -1)"),)),
    Mutant("add_cls_and_positions", "cat_dim_0", ("joins along the wrong axis",), why="wrong axis",
           replace=((CAT, "return torch.cat([cls, x], dim=0) + positions"),)),
    Mutant("add_cls_and_positions", "in_place", ("changed its argument `x` in place",), why="in-place modification",
           replace=((CAT, "x += positions[1:]\n    return torch.cat([cls + positions[0], x], dim=1)"),)),
    Mutant("add_cls_and_positions", "repeat", why="another way", replace=((EXPAND, "cls = cls_token.repeat("
                                                                                   "x.shape[0], 1, 1)"),),
           equivalent="repeat copies the token B times, expand views it: the same values"),
    Mutant("add_cls_and_positions", "split_positions", why="another way", replace=((CAT, (
        "return torch.cat([cls + positions[0], x + positions[1:]], dim=1)")),),
           equivalent="adding row 0 to [CLS] and rows 1.. to the patches is adding the table after the cat"),
    # vit_forward
    Mutant("vit_forward", "mean_pool", ("mean of all tokens",), why="documented: wrong pooling",
           replace=((HEAD, "return model.head(h.mean(dim=1))"),)),
    Mutant("vit_forward", "last_token", ("last token",), why="wrong index",
           replace=((HEAD, "return model.head(h[:, -1])"),)),
    Mutant("vit_forward", "second_token", ("reads token 1",), why="off by one",
           replace=((HEAD, "return model.head(h[:, 1])"),)),
    Mutant("vit_forward", "no_encoder", ("encoder is skipped",), why="step missing", replace=((ENC, "h = x"),)),
    Mutant("vit_forward", "no_positions", ("positions are not added",), why="step missing",
           replace=((ADD, "x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)"),)),
    Mutant("vit_forward", "cls_token_as_position", ("model.cls_position[0]",), why="wrong input used (copy-paste)",
           replace=((TABLE_ROW, "positions = torch.cat([model.cls_token[0], model.positions.table()])"),)),
    Mutant("vit_forward", "patch_size_hard_coded", ("model.patch_size",), why="argument ignored for a default",
           replace=((EMBED, "x = model.patch_embed(patchify(images, 2))"),)),
    Mutant("vit_forward", "no_final_norm", ("final LayerNorm is missing",), why="step missing",
           replace=((ENC, "h = x\n    for layer in model.encoder.layers:\n        h = layer(h)"),)),
    Mutant("vit_forward", "batch_index", ("wrong shape",), why="batched vs unbatched indexing",
           replace=((HEAD, "return model.head(h[0])"),)),
    Mutant("vit_forward", "no_grad", ("No gradient reaches",), why="eval vs train (no_grad "
                                                                                         "copied from evaluation)",
           replace=((EMBED, "with torch.no_grad():\n        " + EMBED), (TABLE_ROW, "    " + TABLE_ROW),
                    (ADD, "    " + ADD), (ENC, "    " + ENC))),
    Mutant("vit_forward", "detached_patches", ("No gradient reaches model.patch_embed.weight",), why="detach",
           replace=((EMBED, EMBED + ".detach()"),)),
    Mutant("vit_forward", "eval_inside", ("switched the model to evaluation mode",), why="eval vs train",
           replace=((EMBED, "model.eval()\n    " + EMBED),)),
    Mutant("vit_forward", "dropout_hard_coded", ("something random",),
           why="dropout hard-coded (F.dropout drops in eval mode too)",
           replace=((ENC, "h = model.encoder(F.dropout(x, 0.1))"),)),
    Mutant("vit_forward", "dropout_before_head", ("dropped out before the head",), why="dropout misplaced",
           replace=((HEAD, "return model.head(model.dropout(h[:, 0]))"),)),
    Mutant("vit_forward", "dropout_on_patches", ("patch embeddings are dropped out",), why="dropout misplaced",
           replace=((EMBED, EMBED + "\n    x = model.dropout(x)"),)),
    Mutant("vit_forward", "no_grad_everywhere", ("not connected to the model's parameters",),
           why="eval vs train (no_grad copied from evaluation)",
           replace=((EMBED, "with torch.no_grad():\n        " + EMBED), (TABLE_ROW, "    " + TABLE_ROW),
                    (ADD, "    " + ADD), (ENC, "    " + ENC), (HEAD, "    " + HEAD))),
    Mutant("vit_forward", "eval_then_train", ("switched the model to training mode",), why="eval vs train",
           replace=((EMBED, "model.eval()\n    " + EMBED), (HEAD, "model.train()\n    " + HEAD))),
    Mutant("vit_forward", "encoder_eval", ("dropout was switched off",), why="eval vs train (dropout off)",
           replace=((ENC, "h = model.encoder.eval()(x)"),)),
    Mutant("vit_forward", "library_forward", ("must assemble the model from its parts",), why="the twin called",
           source="def vit_forward(model, images):\n    return model(images)\n"),
    Mutant("vit_forward", "library_encode", ("must assemble the model from its parts",), why="the twin called",
           replace=((ENC, "h = model.encode(images)"),)),
    Mutant("vit_forward", "head_on_all_tokens", why="another way", replace=((HEAD, "return model.head(h)[:, 0]"),),
           equivalent="the head is a Linear layer applied to each token: row 0 of its output is head(h[:, 0])"),
    Mutant("vit_forward", "library_dropout", why="the library's placement",
           replace=((ADD, ADD + "\n    x = model.dropout(x)"),),
           equivalent="labsupport's ViT applies model.dropout right there; identity in eval mode, the same masks "
                      "as the library's forward in training mode (the check accepts both)"),
    # cls_attention_map
    Mutant("cls_attention_map", "cls_column", ("[CLS] column",), why="documented: row vs column (transpose)",
           replace=((MAP, "return weights.mean(dim=1)[:, 1:, 0].reshape(weights.shape[0], gh, gw)"),)),
    Mutant("cls_attention_map", "max_heads", ("maximum over heads",), why="wrong reduction",
           replace=(("weights.mean(dim=1)", "weights.amax(dim=1)"),)),
    Mutant("cls_attention_map", "sum_heads", ("sums over heads",), why="wrong reduction",
           replace=(("weights.mean(dim=1)", "weights.sum(dim=1)"),)),
    Mutant("cls_attention_map", "first_head", ("head 0 only",), why="wrong index",
           replace=((MAP, "return weights[:, 0, 0, 1:].reshape(weights.shape[0], gh, gw)"),)),
    Mutant("cls_attention_map", "heads_kept", ("heads axis",), why="step missing",
           replace=((MAP, "return weights[:, :, 0, 1:].reshape(weights.shape[0], weights.shape[1], gh, gw)"),)),
    Mutant("cls_attention_map", "cls_key_kept", ("only the patch keys",), why="off-by-one slice",
           replace=((MAP, MAP.replace("[:, 0, 1:]", "[:, 0, :]")),)),
    Mutant("cls_attention_map", "last_key_dropped", ("drops the last key",), why="off-by-one slice",
           replace=((MAP, MAP.replace("[:, 0, 1:]", "[:, 0, :-1]")),)),
    Mutant("cls_attention_map", "grid_swapped", ("transposed",), why="swapped arguments",
           replace=((MAP, MAP.replace("gh, gw)", "gw, gh)")),)),
    Mutant("cls_attention_map", "grid_transposed", ("grid is transposed",), why="batched transpose",
           replace=((MAP, MAP.replace("gh, gw)", "gw, gh).transpose(1, 2)")),)),
    Mutant("cls_attention_map", "batch_mean", ("mean over dim 1",), why="wrong axis",
           replace=(("weights.mean(dim=1)", "weights.mean(dim=0)"),)),
    Mutant("cls_attention_map", "float32", ("dtype torch.float32; expected torch.float64",), why="dtype",
           replace=((MAP, MAP + ".float()"),)),
    Mutant("cls_attention_map", "numpy_return", ("should be a torch.Tensor",), why="numpy vs torch return",
           replace=((MAP, MAP + ".numpy()"),)),
    Mutant("cls_attention_map", "in_place", ("changed its argument `weights` in place",), why="in-place modification",
           replace=((MAP, "weights[:, :, 0, 0] = 0.0\n    " + MAP),)),
    Mutant("cls_attention_map", "slice_then_mean", why="another way",
           replace=((MAP, "return weights[:, :, 0, 1:].mean(dim=1).reshape(-1, gh, gw)"),),
           equivalent="the mean over heads commutes with taking row 0, columns 1.."),
]
