"""Mutants of Lab 3's solutions (positional encodings): realistic wrong answers, each with what the self-check must
say. The documented mistakes of ``labsupport.checks.lab03.MISTAKES`` are run too (test_mutants). Lab 3 has no
dropout and no random sampling, so those classes of mistakes do not arise here."""
from mutation import Mutant

LAB = "lab03"
#: check name of MISTAKES -> (the student's name it stands for, the solution cell whose test must catch it)
TABLE = {"permutation_gap": ("permutation_gap", "permutation_gap"),
         "sinusoidal_encoding": ("sinusoidal_encoding", "sinusoidal"),
         "offset_matrix": ("offset_matrix", "offset_matrix"), "learned_positions": ("LearnedPositions", "learned"),
         "sinusoidal_2d": ("sinusoidal_2d", "sinusoidal_2d")}

PG = "(f(x[:, perm]) - f(x)[:, perm]).abs().max().item()"
SIN = "pe[:, 0::2] = torch.sin(pos * omega)"
COS = "pe[:, 1::2] = torch.cos(pos * omega)"
OMEGA = "omega = 1.0 / 10000 ** (two_i / d_model)"
ZEROS = "pe = torch.zeros(max_len, d_model)"
POS = "pos = torch.arange(max_len, dtype=torch.float32)[:, None]"
ROW1 = "M[2 * i, 2 * i], M[2 * i, 2 * i + 1] = c, s"
ROW2 = "M[2 * i + 1, 2 * i], M[2 * i + 1, 2 * i + 1] = -s, c"
B = "b = k / 10000 ** (2 * i / d_model)"
EMB = "self.embedding = nn.Embedding(max_len, d_model)"
RET = "return x + self.embedding(positions)"
ARANGE = "positions = torch.arange(x.size(1), device=x.device)"
CAT = "torch.cat([rows, cols], dim=-1)"
FLAT = ".reshape(grid_h * grid_w, d_model)"

MUTANTS = [
    # permutation_gap
    Mutant("permutation_gap", "no_item", ("Python number", ".item()"), why="0-d tensor instead of a number",
           replace=((".item()", ""),)),
    Mutant("permutation_gap", "inverse", ("inverse permutation",), why="wrong permutation",
           replace=(("f(x)[:, perm]", "f(x)[:, torch.argsort(perm)]"),)),
    Mutant("permutation_gap", "batch_axis", ("batch axis",), why="wrong axis",
           replace=((PG, "(f(x[perm]) - f(x)[perm]).abs().max().item()"),)),
    Mutant("permutation_gap", "signed", ("*absolute* difference",), why="step missing",
           replace=((".abs()", ""),)),
    Mutant("permutation_gap", "output_not_permuted", ("permute the output too",), why="step missing",
           replace=(("f(x)[:, perm]", "f(x)"),)),
    Mutant("permutation_gap", "mean", ("mean absolute difference",), why="wrong reduction",
           replace=((".max()", ".mean()"),)),
    Mutant("permutation_gap", "no_max", ("one number", ".abs().max().item()"), why="wrong return",
           replace=((".max().item()", ""),)),
    Mutant("permutation_gap", "sum", ("wrong values",), why="wrong reduction", replace=((".max()", ".sum()"),)),
    Mutant("permutation_gap", "output_batch_permuted", ("wrong values",), why="wrong axis",
           replace=(("f(x)[:, perm]", "f(x)[perm]"),)),
    Mutant("permutation_gap", "float", why="another way", replace=((PG, "float(" + PG.removesuffix(".item()") + ")"),),
           equivalent="float() of a one-element tensor is .item()"),
    Mutant("permutation_gap", "abs_in_place", why="another way", replace=((".abs()", ".abs_()"),),
           equivalent="abs_ changes the temporary difference, not an argument"),
    # sinusoidal_encoding
    Mutant("sinusoidal", "swapped", ("sin and cos are swapped",), why="swapped",
           replace=((SIN, SIN.replace("sin", "cos")), (COS, COS.replace("cos", "sin")))),
    Mutant("sinusoidal", "exponent_i", ("you used i / d_model",), why="wrong constant",
           replace=(("torch.arange(0, d_model, 2, dtype=torch.float32)",
                     "torch.arange(d_model // 2, dtype=torch.float32)"),)),
    Mutant("sinusoidal", "multiply", ("must be divided",), why="wrong operation",
           replace=((OMEGA, "omega = 10000 ** (two_i / d_model)"),)),
    Mutant("sinusoidal", "halves", ("interleaves them",), why="wrong layout",
           replace=(("pe[:, 0::2]", "pe[:, :d_model // 2]"), ("pe[:, 1::2]", "pe[:, d_model // 2:]"))),
    Mutant("sinusoidal", "transposed", ("It is transposed",), why="transpose",
           replace=(("return pe", "return pe.T"),)),
    Mutant("sinusoidal", "integer_table", ("floating-point",), why="dtype",
           replace=((ZEROS, "pe = torch.zeros(max_len, d_model, dtype=torch.long)"),)),
    Mutant("sinusoidal", "float64", ("dtype torch.float64; expected torch.float32",), why="dtype",
           replace=((ZEROS, "pe = torch.zeros(max_len, d_model, dtype=torch.float64)"),)),
    Mutant("sinusoidal", "positions_from_one", ("positions start at 1",), why="off by one",
           replace=((POS, "pos = torch.arange(1, max_len + 1, dtype=torch.float32)[:, None]"),)),
    Mutant("sinusoidal", "exponent_max_len", ("divides by max_len",), why="argument swapped",
           replace=(("(two_i / d_model)", "(two_i / max_len)"),)),
    Mutant("sinusoidal", "base_1000", ("wrong values",), why="wrong constant", replace=(("10000", "1000"),)),
    Mutant("sinusoidal", "sines_only", ("wrong values",), why="copy-paste slip",
           replace=((COS, COS.replace("cos", "sin")),)),
    Mutant("sinusoidal", "exp_log", why="another way",
           replace=((OMEGA, "omega = torch.exp(-math.log(10000.0) * two_i / d_model)"),),
           equivalent="exp(-log(10000) 2i/d) = 1 / 10000^(2i/d), equal within float32 rounding"),
    Mutant("sinusoidal", "integer_positions", why="another way",
           replace=((POS, "pos = torch.arange(max_len)[:, None]"),),
           equivalent="integer positions times the float32 frequencies give float32 angles"),
    # offset_matrix
    Mutant("offset_matrix", "transposed", ("rotates the wrong way",), why="transpose",
           replace=((ROW1, ROW1.replace("= c, s", "= c, -s")), (ROW2, ROW2.replace("= -s, c", "= s, c")))),
    Mutant("offset_matrix", "exponent_i", ("frequency is wrong",), why="wrong constant",
           replace=(("(2 * i / d_model)", "(i / d_model)"),)),
    Mutant("offset_matrix", "no_frequency", ("own frequency",), why="step missing", replace=((B, "b = k"),)),
    Mutant("offset_matrix", "cos_sin_swapped", ("cos and sin are swapped",), why="swapped",
           replace=(("c, s = math.cos(b), math.sin(b)", "c, s = math.sin(b), math.cos(b)"),)),
    Mutant("offset_matrix", "float64", ("dtype torch.float64; expected torch.float32",), why="dtype",
           replace=(("M = torch.zeros(d_model, d_model)", "M = torch.zeros(d_model, d_model, dtype=torch.float64)"),)),
    Mutant("offset_matrix", "range_too_long", ("range(d_model // 2)",), why="off by one (loop bound)",
           replace=(("range(d_model // 2)", "range(d_model)"),)),
    Mutant("offset_matrix", "k_ignored", ("wrong values",), why="argument ignored",
           replace=((B, "b = 1 / 10000 ** (2 * i / d_model)"),)),
    Mutant("offset_matrix", "eye", why="another way",
           replace=(("M = torch.zeros(d_model, d_model)", "M = torch.eye(d_model)"),),
           equivalent="every diagonal entry is overwritten by a cosine"),
    Mutant("offset_matrix", "negative_power", why="another way", replace=((B, "b = k * 10000 ** (-2 * i / d_model)"),),
           equivalent="k * 10000^(-2i/d) = k / 10000^(2i/d)"),
    # LearnedPositions
    Mutant("learned", "buffer", ("no learnable parameters",), why="not a parameter",
           replace=((EMB, 'self.register_buffer("table", torch.randn(max_len, d_model))'),
                    (RET, "return x + self.table[positions]"))),
    Mutant("learned", "table_in_forward", ("no learnable parameters",), why="not a parameter",
           replace=((EMB, "self.max_len, self.d_model = max_len, d_model"),
                    (RET, "return x + nn.Embedding(self.max_len, self.d_model)(positions)"))),
    Mutant("learned", "only_positions", ("only the position vectors",), why="step missing",
           replace=((RET, "return self.embedding(positions)"),)),
    Mutant("learned", "unchanged", ("x unchanged",), why="step missing", replace=((RET, "return x"),)),
    Mutant("learned", "concatenated", ("concatenated",), why="wrong operation",
           replace=((RET, "return torch.cat([x, self.embedding(positions).expand_as(x)], dim=-1)"),)),
    Mutant("learned", "whole_table", ("not the whole table",), why="off-by-one slice",
           replace=((RET, "return x + self.embedding.weight"),)),
    Mutant("learned", "detached", ("No gradient",), why="gradient cut",
           replace=((RET, "return x + self.embedding(positions).detach()"),)),
    Mutant("learned", "no_grad", ("No gradient",), why="gradient cut",
           replace=((RET, "with torch.no_grad():\n            pos = self.embedding(positions)\n"
                          "        return x + pos"),)),
    Mutant("learned", "in_place", ("changed its argument `x` in place",), why="in-place modification",
           replace=((RET, "x += self.embedding(positions)\n        return x"),)),
    Mutant("learned", "batch_axis_positions", ("not x.size(0)",), why="wrong axis",
           replace=(("x.size(1)", "x.size(0)"),)),
    Mutant("learned", "positions_from_one", ("positions start at 1",), why="off by one",
           replace=((ARANGE, "positions = torch.arange(1, x.size(1) + 1, device=x.device)"),)),
    Mutant("learned", "one_row_too_many", ("expected one vector of size d_model per position",), why="wrong size",
           replace=((EMB, "self.embedding = nn.Embedding(max_len + 1, d_model)"),)),
    Mutant("learned", "parameter", why="another way",
           replace=((EMB, "self.weight = nn.Parameter(torch.randn(max_len, d_model))"),
                    (RET, "return x + self.weight[: x.size(1)]")),
           equivalent="a table kept as an nn.Parameter is as learnable as an nn.Embedding's"),
    # sinusoidal_2d
    Mutant("sinusoidal_2d", "swapped", ("Rows and columns are swapped",), why="swapped",
           replace=((CAT, "torch.cat([cols, rows], dim=-1)"),)),
    Mutant("sinusoidal_2d", "column_major", ("column by column",), why="wrong order",
           replace=((FLAT, ".transpose(0, 1)" + FLAT),)),
    Mutant("sinusoidal_2d", "not_flattened", ("flatten the grid",), why="step missing", replace=((FLAT, ""),)),
    Mutant("sinusoidal_2d", "stacked", ("torch.stack",), why="wrong operation",
           replace=((CAT, "torch.stack([rows, cols], dim=-1)"),)),
    Mutant("sinusoidal_2d", "half_is_float", ("d_model // 2",), why="dtype (a float where an int is needed)",
           replace=(("half = d_model // 2", "half = d_model / 2"),)),
    Mutant("sinusoidal_2d", "full_width_rows", ("raised RuntimeError", "(grid_h, grid_w, d_model // 2)"),
           why="wrong size",
           replace=(("sinusoidal_encoding(grid_h, half)", "sinusoidal_encoding(grid_h, d_model)"),)),
    Mutant("sinusoidal_2d", "grid_arguments_swapped", ("raised RuntimeError", "sinusoidal_encoding(grid_h,"),
           why="swapped arguments",
           replace=(("sinusoidal_encoding(grid_h, half)", "sinusoidal_encoding(grid_w, half)"),)),
    Mutant("sinusoidal_2d", "rows_twice", ("wrong values",), why="copy-paste slip",
           replace=(("sinusoidal_encoding(grid_w, half)[None, :, :]",
                     "sinusoidal_encoding(grid_h, half)[:, None, :]"),)),
    Mutant("sinusoidal_2d", "flatten", why="another way", replace=((FLAT, ".flatten(0, 1)"),),
           equivalent="flattening the two grid axes is the row-major reshape"),
]
