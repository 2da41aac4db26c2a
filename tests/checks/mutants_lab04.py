"""Mutants of Lab 4's solutions (the transformer block): realistic wrong answers, each with what the self-check must
say. The documented mistakes of ``labsupport.checks.lab04.MISTAKES`` are run too (test_mutants)."""
from mutation import Mutant

LAB = "lab04"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {"layer_norm": ("LayerNorm", "layer_norm"), "feed_forward": ("FeedForward", "feed_forward"),
         "sublayer": ("sublayer", "sublayer"), "encoder_block": ("EncoderBlock", "encoder_block"),
         "decoder_block": ("DecoderBlock", "decoder_block")}

NORMALISE = "return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias"
FF = "return self.linear2(self.dropout(self.activation(self.linear1(x))))"
PRE = "return x + dropout(fn(norm(x)))"
POST = "return norm(x + dropout(fn(x)))"
SA = "lambda h: self.self_attn(h, h, h, mask)[0]"
ENC_FF = "return sublayer(x, self.ff, self.norm2, self.dropout2, self.norm_first)"
DEC_SA = "lambda h: self.self_attn(h, h, h, self_mask)[0]"
DEC_CA = "lambda h: self.cross_attn(h, memory, memory, memory_mask)[0]"
TRAINING = "In training mode (same random seed for both)"
PAD = " " * 21  # the continuation indent of the blocks' sublayer calls

MUTANTS = [
    # LayerNorm
    Mutant("layer_norm", "unbiased", ("unbiased variance",), why="wrong estimator",
           replace=(("unbiased=False", "unbiased=True"),)),
    Mutant("layer_norm", "var_default", ("unbiased variance",), why="a library default (torch.var is unbiased)",
           replace=(("x.var(dim=-1, keepdim=True, unbiased=False)", "x.var(dim=-1, keepdim=True)"),)),
    Mutant("layer_norm", "eps_outside", ("outside the square root",), why="wrong place",
           replace=(("torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)"),)),
    Mutant("layer_norm", "eps_hard_coded", ("ignores the eps argument",), why="argument ignored for a default",
           replace=(("torch.sqrt(var + self.eps)", "torch.sqrt(var + 1e-5)"),)),
    Mutant("layer_norm", "no_eps", ("add eps inside the square root",), why="step missing (division by zero)",
           replace=(("torch.sqrt(var + self.eps)", "torch.sqrt(var)"),)),
    Mutant("layer_norm", "mean_without_keepdim", ("keepdim=True",), why="shape/broadcasting",
           replace=(("x.mean(dim=-1, keepdim=True)", "x.mean(dim=-1)"),)),
    Mutant("layer_norm", "batch_axis", ("batch axis",), why="wrong axis", replace=(("dim=-1", "dim=0"),)),
    Mutant("layer_norm", "no_affine", ("weight and bias are not applied",), why="step missing",
           replace=((" * self.weight + self.bias", ""),)),
    Mutant("layer_norm", "gamma_beta", ("missing `weight`, `bias`", "unexpected `gamma`, `beta`"),
           why="names that do not match nn.LayerNorm's",
           replace=(("self.weight", "self.gamma"), ("self.bias", "self.beta"))),
    Mutant("layer_norm", "random_init", ("must start at ones",), why="initialisation",
           replace=(("nn.Parameter(torch.ones(d_model))", "nn.Parameter(torch.rand(d_model))"),)),
    Mutant("layer_norm", "not_parameters", ("missing `weight`, `bias`",), why="plain tensors are not parameters",
           replace=(("nn.Parameter(torch.ones(d_model))", "torch.ones(d_model)"),
                    ("nn.Parameter(torch.zeros(d_model))", "torch.zeros(d_model)"))),
    Mutant("layer_norm", "in_place", ("changed its argument `x` in place",), why="in-place modification",
           replace=((NORMALISE, "x -= mean\n        return x / torch.sqrt(var + self.eps) * self.weight"
                                " + self.bias"),)),
    Mutant("layer_norm", "bias_before_weight", ("wrong values",), why="wrong order of operations",
           replace=((NORMALISE, "return ((x - mean) / torch.sqrt(var + self.eps) + self.bias) * self.weight"),)),
    Mutant("layer_norm", "float64_parameters", ("dtype torch.float64; expected torch.float32",), why="dtype",
           replace=(("torch.ones(d_model)", "torch.ones(d_model, dtype=torch.float64)"),
                    ("torch.zeros(d_model)", "torch.zeros(d_model, dtype=torch.float64)"))),
    Mutant("layer_norm", "mean_of_squares", why="another way", replace=(
        ("x.var(dim=-1, keepdim=True, unbiased=False)", "((x - mean) ** 2).mean(dim=-1, keepdim=True)"),),
           equivalent="the mean of the squared deviations is the biased variance"),
    Mutant("layer_norm", "rsqrt", why="another way", replace=(
        ("/ torch.sqrt(var + self.eps)", "* torch.rsqrt(var + self.eps)"),),
           equivalent="multiplying by rsqrt is dividing by sqrt (within float rounding)"),
    # FeedForward
    Mutant("feed_forward", "no_activation", ("activation is missing",), why="step missing",
           replace=((FF, "return self.linear2(self.dropout(self.linear1(x)))"),)),
    Mutant("feed_forward", "always_relu", ("ignores the activation argument",), why="argument ignored for a default",
           replace=(('F.relu if activation == "relu" else F.gelu', "F.relu"),)),
    Mutant("feed_forward", "activations_swapped", ("wrong activation",), why="swapped arguments",
           replace=(('F.relu if activation == "relu" else F.gelu', 'F.relu if activation == "gelu" else F.gelu'),)),
    Mutant("feed_forward", "gelu_tanh", ("tanh approximation",), why="wrong variant",
           replace=(("else F.gelu", 'else nn.GELU(approximate="tanh")'),)),
    Mutant("feed_forward", "no_dropout", ("applies no dropout",), why="dropout forgotten",
           replace=((FF, "return self.linear2(self.activation(self.linear1(x)))"),)),
    Mutant("feed_forward", "dropout_on_output", ("applied to the output",), why="dropout misplaced",
           replace=((FF, "return self.dropout(self.linear2(self.activation(self.linear1(x))))"),)),
    Mutant("feed_forward", "dropout_before_activation", ("before the activation",), why="dropout misplaced",
           replace=((FF, "return self.linear2(self.activation(self.dropout(self.linear1(x))))"),)),
    Mutant("feed_forward", "rate_hard_coded", ("hard-coded",), why="dropout rate hard-coded",
           replace=(("nn.Dropout(dropout)", "nn.Dropout(0.1)"),)),
    Mutant("feed_forward", "default_dropout", ("rate `dropout`",), why="argument ignored for a default",
           replace=(("nn.Dropout(dropout)", "nn.Dropout()"),)),
    Mutant("feed_forward", "functional_dropout", ("evaluation mode too",), why="eval vs train behaviour",
           replace=((FF, "return self.linear2(F.dropout(self.activation(self.linear1(x)), self.dropout.p))"),)),
    Mutant("feed_forward", "activation_after", ("also applied after linear2",), why="extra step",
           replace=((FF, "return self.activation(self.linear2(self.dropout(self.activation(self.linear1(x)))))"),)),
    Mutant("feed_forward", "fc_names", ("unexpected `fc1.weight`", "Name the layers"), why="names",
           replace=(("linear1", "fc1"), ("linear2", "fc2"))),
    Mutant("feed_forward", "no_bias", ("missing `linear1.bias`",), why="parameters missing",
           replace=(("nn.Linear(d_model, d_ff)", "nn.Linear(d_model, d_ff, bias=False)"),)),
    Mutant("feed_forward", "layers_transposed", ("`linear1.weight` has shape (8, 24); expected (24, 8)",),
           why="swapped arguments", replace=((
               "self.linear1 = nn.Linear(d_model, d_ff)\n        self.linear2 = nn.Linear(d_ff, d_model)",
               "self.linear1 = nn.Linear(d_ff, d_model)\n        self.linear2 = nn.Linear(d_model, d_ff)"),)),
    Mutant("feed_forward", "relu_module", why="another way", replace=(("F.relu if", "nn.ReLU() if"),),
           equivalent="nn.ReLU() computes F.relu"),
    # sublayer
    Mutant("sublayer", "placements_swapped", ("placements are swapped",), why="wrong branch",
           replace=(("if norm_first:", "if not norm_first:"),)),
    Mutant("sublayer", "norm_first_ignored", ("norm_first=True is pre-norm",), why="argument ignored",
           replace=(("    if norm_first:\n        " + PRE + "\n", ""),)),
    Mutant("sublayer", "post_no_residual", ("residual connection is missing in post-norm",), why="step missing",
           replace=((POST, "return norm(dropout(fn(x)))"),)),
    Mutant("sublayer", "pre_no_residual", ("residual connection is missing in pre-norm",), why="step missing",
           replace=((PRE, "return dropout(fn(norm(x)))"),)),
    Mutant("sublayer", "pre_normalised_residual", ("residual carries norm(x)",), why="wrong input used",
           replace=((PRE, "return norm(x) + dropout(fn(norm(x)))"),)),
    Mutant("sublayer", "pre_no_norm", ("without the norm",), why="step missing", replace=(("fn(norm(x))", "fn(x)"),)),
    Mutant("sublayer", "pre_norm_after", ("norm comes after the sub-layer",), why="wrong place",
           replace=((PRE, "return x + dropout(norm(fn(x)))"),)),
    Mutant("sublayer", "post_norm_of_output", ("normalises the sub-layer's output",), why="wrong place",
           replace=((POST, "return x + norm(dropout(fn(x)))"),)),
    Mutant("sublayer", "no_dropout", ("Dropout is not applied",), why="dropout forgotten",
           replace=(("dropout(fn(norm(x)))", "fn(norm(x))"), ("dropout(fn(x))", "fn(x)"))),
    Mutant("sublayer", "dropout_on_sum", ("whole sum",), why="dropout misplaced",
           replace=((POST, "return norm(dropout(x + fn(x)))"),)),
    Mutant("sublayer", "in_place", ("changed its argument `x` in place",), why="in-place modification",
           replace=((PRE, "x += dropout(fn(norm(x)))\n        return x"),)),
    Mutant("sublayer", "dropout_twice", ("wrong values",), why="extra step",
           replace=(("dropout(fn(x))", "dropout(dropout(fn(x)))"),)),
    Mutant("sublayer", "named_intermediate", why="another way", replace=(
        (PRE, "h = norm(x)\n        return x + dropout(fn(h))"),),
           equivalent="the same computation with a named intermediate"),
    # EncoderBlock
    Mutant("encoder_block", "mask_ignored", ("mask is ignored",), why="argument ignored",
           replace=((SA, "lambda h: self.self_attn(h, h, h)[0]"),)),
    Mutant("encoder_block", "mask_inverted", ("mask is inverted",), why="mask polarity",
           replace=((SA, "lambda h: self.self_attn(h, h, h, None if mask is None else ~mask)[0]"),)),
    Mutant("encoder_block", "norm_first_hard_coded", ("norm is in the wrong place",), why="argument ignored",
           replace=(("self.dropout1, self.norm_first)", "self.dropout1, False)"),
                    ("self.dropout2, self.norm_first)", "self.dropout2, False)"))),
    Mutant("encoder_block", "same_norm", ("Both sub-layers use norm1",), why="copy-paste slip",
           replace=(("self.ff, self.norm2", "self.ff, self.norm1"),)),
    Mutant("encoder_block", "norms_swapped", ("norms are swapped",), why="swapped arguments",
           replace=(("self.norm1, self.dropout1", "self.norm2, self.dropout1"),
                    ("self.ff, self.norm2", "self.ff, self.norm1"))),
    Mutant("encoder_block", "order_swapped", ("wrong order",), why="wrong order", replace=(
        ("        x = sublayer(x, " + SA + ",\n" + " " * 21 + "self.norm1, self.dropout1, self.norm_first)\n        "
         + ENC_FF,
         "        x = sublayer(x, self.ff, self.norm1, self.dropout1, self.norm_first)\n"
         "        return sublayer(x, " + SA + ", self.norm2, self.dropout2, self.norm_first)"),)),
    Mutant("encoder_block", "pair_not_unpacked", ("Attention returns a pair (output, weights)",),
           why="tuple where a tensor is expected", replace=((SA, "lambda h: self.self_attn(h, h, h, mask)"),)),
    Mutant("encoder_block", "attention_reads_x", ("reads the block's input x",), why="wrong input used",
           replace=((SA, "lambda h: self.self_attn(x, x, x, mask)[0]"),)),
    Mutant("encoder_block", "value_from_x", ("wrong values",), why="wrong input used for a projection",
           replace=((SA, "lambda h: self.self_attn(h, h, x, mask)[0]"),)),
    Mutant("encoder_block", "no_dropout", ("outputs are not dropped",), why="dropout forgotten",
           replace=(("self.dropout1, self.norm_first", "nn.Identity(), self.norm_first"),
                    ("self.dropout2, self.norm_first", "nn.Identity(), self.norm_first"))),
    Mutant("encoder_block", "ff_dropout_forgotten", (TRAINING,), why="dropout forgotten",
           replace=(("self.dropout2, self.norm_first", "nn.Identity(), self.norm_first"),)),
    Mutant("encoder_block", "rate_hard_coded", ("hard-coded",), why="dropout rate hard-coded",
           replace=(("nn.Dropout(dropout), nn.Dropout(dropout)", "nn.Dropout(0.1), nn.Dropout(0.1)"),)),
    Mutant("encoder_block", "attention_without_dropout", (TRAINING, "inside self_attn"), why="dropout forgotten",
           replace=(("MultiHeadAttention(d_model, num_heads, dropout=dropout)",
                     "MultiHeadAttention(d_model, num_heads)"),)),
    Mutant("encoder_block", "ff_without_dropout", (TRAINING, "inside ff"), why="argument ignored for a default",
           replace=(("FeedForward(d_model, d_ff, dropout)", "FeedForward(d_model, d_ff)"),)),
    Mutant("encoder_block", "dropout1_twice", why="one module for both", replace=(
        ("self.norm2, self.dropout2", "self.norm2, self.dropout1"),),
           equivalent="dropout1 and dropout2 are nn.Dropout with the same rate and no state: either does the same"),
    # DecoderBlock
    Mutant("decoder_block", "cross_attends_to_itself", ("keys and values from memory",), why="wrong input used",
           replace=((DEC_CA, "lambda h: self.cross_attn(h, h, h, memory_mask)[0]"),)),
    Mutant("decoder_block", "cross_on_x_unmasked", ("from the decoder's own states",), why="wrong input used",
           replace=((DEC_CA, "lambda h: self.cross_attn(h, h, h)[0]"),)),
    Mutant("decoder_block", "value_from_h", ("keys and values from memory",), why="wrong input used for a projection",
           replace=((DEC_CA, "lambda h: self.cross_attn(h, memory, h, memory_mask)[0]"),)),
    Mutant("decoder_block", "queries_from_memory", ("queries come", "from the decoder"), why="swapped arguments",
           replace=((DEC_CA, "lambda h: self.cross_attn(memory, h, h, memory_mask)[0]"),)),
    Mutant("decoder_block", "masks_swapped", ("each mask goes to its own attention",), why="swapped arguments",
           replace=((DEC_SA, "lambda h: self.self_attn(h, h, h, memory_mask)[0]"),
                    (DEC_CA, "lambda h: self.cross_attn(h, memory, memory, self_mask)[0]"))),
    Mutant("decoder_block", "self_mask_ignored", ("self_mask is ignored",), why="argument ignored",
           replace=((DEC_SA, "lambda h: self.self_attn(h, h, h)[0]"),)),
    Mutant("decoder_block", "memory_mask_ignored", ("memory_mask is ignored",), why="argument ignored",
           replace=((DEC_CA, "lambda h: self.cross_attn(h, memory, memory)[0]"),)),
    Mutant("decoder_block", "memory_normalised", ("memory is normalised",), why="extra step",
           replace=((DEC_CA, "lambda h: self.cross_attn(h, self.norm2(memory), self.norm2(memory), memory_mask)[0]"),)),
    Mutant("decoder_block", "norm_first_hard_coded", ("norm is in the wrong place",), why="argument ignored",
           replace=(("self.norm_first)", "False)"),)),
    Mutant("decoder_block", "self_attention_skipped", ("wrong values",), why="variable slip",
           replace=(("        x = sublayer(x, " + DEC_SA, "        y = sublayer(x, " + DEC_SA),)),
    Mutant("decoder_block", "cross_pair_not_unpacked", ("Attention returns a pair (output, weights)",),
           why="tuple where a tensor is expected", replace=((DEC_CA, DEC_CA[:-3]),)),
    Mutant("decoder_block", "cross_dropout_forgotten", (TRAINING,), why="dropout forgotten",
           replace=(("self.norm2, self.dropout2", "self.norm2, nn.Identity()"),)),
    Mutant("decoder_block", "rate_hard_coded", ("hard-coded",), why="dropout rate hard-coded",
           replace=(("(nn.Dropout(dropout) for _ in range(3))", "(nn.Dropout(0.1) for _ in range(3))"),)),
    Mutant("decoder_block", "cross_first", ("wrong order",), why="wrong order", replace=(
        (f"        x = sublayer(x, {DEC_SA},\n{PAD}self.norm1, self.dropout1, self.norm_first)\n"
         f"        x = sublayer(x, {DEC_CA},\n{PAD}self.norm2, self.dropout2, self.norm_first)\n",
         f"        x = sublayer(x, {DEC_CA},\n{PAD}self.norm1, self.dropout1, self.norm_first)\n"
         f"        x = sublayer(x, {DEC_SA},\n{PAD}self.norm2, self.dropout2, self.norm_first)\n"),)),
    Mutant("decoder_block", "one_dropout", why="one module for all", replace=(
        ("self.norm2, self.dropout2", "self.norm2, self.dropout1"),
        ("self.norm3, self.dropout3", "self.norm3, self.dropout1")),
           equivalent="the three dropouts are nn.Dropout with the same rate and no state: one does the same"),
]
