# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Start here: how this course works
#
# Welcome to **toyattn**, a hands-on course on transformer attention. Instead of starting with a
# model of hundreds of millions of parameters, you first build and take apart models small enough to
# print: one attention head trained on two sentences, a handful of heads shuffled and recovered, and
# a two-layer induction circuit. Then you read real checkpoints (all-MiniLM-L6-v2, SmolLM2-135M,
# Gemma 3 270M) with the same tools: lessons 3 and 5. The published facts the lessons compare
# with are collected, with their sources, in `docs/references.md`.
#
# **Learning goals of this notebook.** After it you can
# 1. find your way around the course's folders;
# 2. check which Python, PyTorch and device (CPU or GPU) your notebook runs on;
# 3. tell, from measurements made on your own machine, when a GPU makes a computation faster and
#    when it makes it slower;
# 4. do an exercise and read what its check tells you.

# %% [markdown]
# ## The lessons
#
# | lesson | notebook | what you build and read |
# | --- | --- | --- |
# | 0 | `00_start_here` (this one), `exercises/00_warmup` | the set-up, a softmax, the checks |
# | 1 | `01_attention_toy` | one causal attention head that learns "man ordered the chicken" |
# | 2 | `02_head_permutation` | shuffling heads inside a fused QKV weight, and recovering the order |
# | 3 | `03_symmetry_scores` | how symmetric a head's $W_q W_k^\top$ is, in encoders vs decoders |
# | 4 | `04_qk_ov_matching` | how the two layers of an induction circuit line up during training |
# | 5 | `05_induction_circuits` | ablating, patching and scoring the induction circuit; induction heads in a real model |
#
# ## The folders
#
# * `notebooks/`: the lectures. Read and run them top to bottom.
# * `exercises/`: the problem sets, with `# YOUR CODE HERE` where your code goes. **Work here.**
# * `solutions/`: the same problem sets, solved. Peek only after trying.
# * `toyattn/`: the small Python package the notebooks import (models, hooks, plots, device
#   handling, checks). Each function says which lesson teaches it.
#
# Every notebook comes as a pair: `NAME.ipynb` (open it in JupyterLab) and `NAME.py`, the same
# notebook as plain text (easier to read in a diff). With `jupytext` installed (`make lab` installs
# it), JupyterLab keeps the two in step when you save.

# %% [markdown]
# ## Which machine am I on?
#
# Most confusion on a shared cluster comes from running somewhere other than you think: another
# Python, a CPU-only PyTorch, or a GPU other than the one your job was given. `describe()` prints
# the facts. **Predict first:** on your laptop, what will `device` say? And inside a cluster GPU job?

# %%
from toyattn import checks, describe, get_device, seed_everything, to_numpy
from toyattn.device import format_description

print(format_description(describe()))

# %% [markdown]
# Read the output from top to bottom:
#
# * `executable` is the Python running this notebook. It should be inside the course's `.venv`
#   (or your conda environment); if not, pick the right kernel (*Kernel → Change Kernel*).
# * `torch_cuda_build` says whether this PyTorch can use a GPU at all.
# * `device` is where the course will compute: `cuda:0` on a GPU node, `cpu` otherwise.
#   Set the environment variable `TOYATTN_DEVICE=cpu` (before starting Jupyter) to force the CPU.
# * `CUDA_VISIBLE_DEVICES` and the `SLURM_...` lines show which GPU the scheduler gave your job;
#   `<unset>` is normal on a laptop.
#
# The same report is available in a terminal as `toyattn doctor`. It exits with an error when
# the device you asked for is not there, which makes it a good first line in a batch job.

# %%
device = get_device()
print("computing on:", device)

# %% [markdown]
# ## Repeatable runs
#
# Training starts from random numbers. `seed_everything(seed)` seeds Python, NumPy and PyTorch so
# that a notebook tells the same story every time you run it. Run the next cell twice: the
# numbers do not change.

# %%
import torch

seed_everything(0)
x = torch.randn(3, device=device)
print(to_numpy(x))  # to_numpy works for GPU tensors and tensors that require grad

# %% [markdown]
# ## Running on a cluster JupyterHub GPU node
#
# 1. Start a server with a GPU (your hub's spawner form), open a terminal there, clone the course,
#    and run `make lab TORCH=cuda` once, or install into your conda environment (see the README).
# 2. Register the kernel: `.venv/bin/python -m ipykernel install --user --name toyattn`, then pick
#    *Python (toyattn)* in JupyterLab.
# 3. Run the cell above: `device` should say `cuda:0`, and the GPU line should name the card you
#    were given. Free its memory when you are done (`toyattn.device.free_gpu_memory()`, or restart
#    the kernel): other people share the node.

# %% [markdown]
# ## When does a GPU help?
#
# A GPU has thousands of arithmetic units; a laptop CPU has a handful of cores, each doing a few dozen
# floating-point operations per clock cycle at best (vector units with fused multiply-add). Yet a GPU is not always faster. We measure instead of guessing:
# first a matrix product $C = AB$ of two $n \times n$ matrices ($2n^3$ floating-point operations) for
# growing $n$, then one training step of lesson 1's model.
#
# **Predict first:** from which $n$ on is a GPU faster than this machine's CPU: 16, 256, 2048? And
# lesson 1's model, whose weight matrices hold at most 140 numbers ($20 \times 7$): will it train
# faster on a GPU or on the CPU? (Without a GPU, the cells measure the CPU alone: predict its curve.)

# %%
import matplotlib.pyplot as plt

from toyattn.device import cpu_threads
from toyattn.device.timing import first_win, matmul_seconds, matmul_times

accelerators = [name for name, there in (("cuda", torch.cuda.is_available()),
                                         ("mps", torch.backends.mps.is_available())) if there]
devices = ["cpu", *accelerators]
sizes = [16, 32, 64, 128, 256, 512, 1024] + ([2048] if accelerators else [])
matmul_s = {name: matmul_times(sizes, name) for name in devices}  # medians of 5 runs; PyTorch's default threads
best_cpu_rate = max(2 * n**3 / t for n, t in zip(sizes, matmul_s["cpu"], strict=True))

fig, ax = plt.subplots(figsize=(6.5, 4))
for name, seconds in matmul_s.items():
    ax.loglog(sizes, [t * 1e3 for t in seconds], "o-", label=name)
ax.loglog(sizes, [2 * n**3 / best_cpu_rate * 1e3 for n in sizes], "k:", label="CPU at its best rate ($n^3$)")
ax.set(xlabel="n (one n x n @ n x n product)", ylabel="median time (ms)",
       title="Time of one matrix product against its size")
ax.legend()
plt.show()

# %% [markdown]
# **Reading the plot.** Both axes are logarithmic, so a time that grows like $n^3$ is a straight line
# rising 3 decades for each decade of $n$ (the dotted line: the time at the best rate the CPU reached),
# and a fixed cost is a flat line. Look for where each curve is flat (the cost of making a call at all,
# whatever the size) and where it bends onto the $n^3$ slope (the arithmetic dominates). With a GPU you
# see two curves: where they cross is where the GPU starts to pay. Timings on a shared machine are
# noisy: a point far off its neighbours is usually another program using the cores at that moment
# (rerun the cell). The next cell reads the crossing off your measurements.

# %%
for name, seconds in matmul_s.items():
    rates = [2 * n**3 / t for n, t in zip(sizes, seconds, strict=True)]
    best_at = rates.index(max(rates))
    print(f"{name}: GFLOP/s by n: " + ", ".join(f"{n}: {r / 1e9:.1f}" for n, r in zip(sizes, rates, strict=True)))
    # Past the size where the rate peaked, a rate far below the peak is not the hardware: something else ran.
    disturbed = [n for n, r in zip(sizes[best_at:], rates[best_at:], strict=True) if r < max(rates) / 2]
    if disturbed:
        print(f"  n = {disturbed} ran at under half the best rate: probably other programs on the cores; rerun the cell")
for name in accelerators:
    win = first_win(sizes, matmul_s["cpu"], matmul_s[name])
    print(f"On this machine {name} is faster than the CPU from n = {win} on." if win else
          f"Within these sizes {name} never stays faster than the CPU: try larger n (4096).")
if not accelerators:
    print("No GPU here (neither CUDA nor Apple's MPS is available): only the CPU curve is drawn. "
          "On a GPU node the same cell draws both and prints where they cross.")

# %% [markdown]
# Now lesson 1's model. One training step is a forward pass on the two sentences, the loss, a
# backward pass and Adam's update: the same kind of calls as above, on tiny matrices. The next cell
# counts the step's matrix-product operations (with PyTorch's own counter, which counts matrix
# products only: the softmax, the loss and Adam's update add a few thousand more) and times the step
# on each device: on the CPU on one thread, the course's default for this model.

# %%
from toyattn.sentences.training import toy_step_flops, toy_step_seconds

flops = toy_step_flops()
step_s = {name: toy_step_seconds(name) for name in devices}  # medians of 30 steps
with cpu_threads(1):
    one_thread_rate = 2 * 256**3 / matmul_seconds(256, "cpu")
print(f"One training step of lesson 1's toy: {flops:,} floating-point operations in matrix products.")
for name, seconds in step_s.items():
    print(f"{name}: {seconds * 1e6:.0f} µs per step, {flops / seconds / 1e9:.3f} GFLOP/s of useful work")
print(f"At the rate one CPU thread reaches on a 256 x 256 product ({one_thread_rate / 1e9:.1f} GFLOP/s), "
      f"those products would take {flops / one_thread_rate * 1e6:.2f} µs: "
      f"{flops / one_thread_rate / step_s['cpu']:.2%} of the CPU's step time.")
for name in accelerators:
    ratio = step_s[name] / step_s["cpu"]
    verdict = "no clear difference" if 0.9 < ratio < 1.1 else ("slower" if ratio > 1 else "faster") + f" on {name}"
    print(f"The toy's step takes {ratio:.2f}x the CPU's time on {name}: {verdict}.")

# %% [markdown]
# **Why a tiny model gains little or nothing from a GPU.** Look at the line starting "At the rate":
# it says how small a part of the CPU's step the arithmetic itself could be. The rest is not
# arithmetic. Every operation is a separate call with a fixed cost: Python and PyTorch deciding what
# to run, and on a GPU a *kernel launch*, which typically costs a few microseconds of CPU time before
# any arithmetic starts; reading a result back makes the CPU wait for the GPU. A faster GPU does not
# make that overhead smaller; it only makes the arithmetic faster, and the toy has almost none. (For
# reference, a run of the course on one NVIDIA H100 reported 300 steps of this model at 0.44 s on the
# GPU against 0.18 s on one CPU thread of the same machine: `benchmarks/results/h100_reference.md`.)
# That is why the course trains lesson 1's model on one CPU thread by default. A GPU pays off for large
# matrices (the right of the plot) and large batches. Stacking many small runs into one batch (lesson 1,
# section 9, trains its 12 seeds that way) cuts the number of calls 12-fold on any device; whether a GPU
# then beats the CPU is for you to time: `benchmarks/bench_stacked_runs.py --device cuda`, then
# `--device cpu`.
#
# **Try next:** add 2048 to `sizes` (on a GPU node, 4096 too) and see how far the curves part; time
# the toy with `toy_step_seconds("cpu", threads=2)` instead of one thread, and explain the difference.

# %% [markdown]
# ## How exercises and checks work
#
# Every exercise cell ends with a check. Here is one, already solved, so you can see both outcomes.

# %%
def softmax(x: torch.Tensor) -> torch.Tensor:
    e = (x - x.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


checks.check_softmax(softmax)

# %% [markdown]
# A wrong answer does not pass silently. The naive softmax below overflows on large scores; the
# check says which case failed, what it expected and what it got (we catch the error here only so
# that this notebook keeps running).

# %%
def naive_softmax(x: torch.Tensor) -> torch.Tensor:
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


try:
    checks.check_softmax(naive_softmax)
except AssertionError as err:
    print("The check says:", err)

# %% [markdown]
# ## Plots you can hover
#
# The lessons draw matrices as heatmaps: a static one for the page, and an interactive twin in which
# hovering a cell shows its row, its column and its value. The next cell builds an attention pattern for
# five words from random scores, with the softmax above and a *causal mask* (a position may only look at
# itself and at earlier positions). Row = the position that looks (the query), column = the position
# looked at (the key).
#
# **Predict first:** which cells will be exactly 0? And what will each row add up to?

# %%
from toyattn.plotting import heatmap_plotly

words = ["<ST>", "man", "ordered", "the", "chicken"]
seed_everything(0)
scores = torch.randn(len(words), len(words))
future = torch.ones(len(words), len(words), dtype=torch.bool).triu(diagonal=1)  # key after query
pattern = softmax(scores.masked_fill(future, float("-inf")))
heatmap_plotly(pattern, words, words, title="A causal attention pattern from random scores (hover a cell)",
               xlabel="key (looked at)", ylabel="query (looking)", colorscale="Greens", zmin=0, zmax=1)

# %% [markdown]
# Hover the cells above the diagonal: they are exactly 0, because $e^{-\infty} = 0$, so no position
# sees a later one. Each row is a softmax, so its weights add up to 1 (the next cell prints the sums);
# the first row has only one cell to give its weight to. Lesson 1 trains such a pattern instead of
# drawing it at random.

# %%
print("row sums:", pattern.sum(dim=-1))

# %% [markdown]
# ## What to do next
#
# * Open `exercises/00_warmup.ipynb` and do its two exercises.
# * Then start lesson 1, `notebooks/01_attention_toy.ipynb`.
# * Instructors: the README explains how to regenerate exercises after editing a solution
#   (`make build`) and how the test suite keeps everything executable.
