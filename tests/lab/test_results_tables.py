"""Every results table in docs/results.md and the README is what its printer script prints from
the committed reports today: no number was copied by hand or left behind when a report changed.
(The reports themselves are regenerated from run folders, which are not committed.)"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
S = "docs/scripts/"
R = "docs/reports/"
TABLES = [  # (doc, printer command): the commands the doc itself names
    ("docs/results.md", f"{S}priors_table.py {R}results.md {R}bench_priors_cpu.json"),
    ("docs/results.md", f"{S}priors_table.py {R}results.md '' resnet20"),
    ("docs/results.md", f"{S}priors_table.py {R}results.md --banks"),
    ("docs/results.md", f"{S}adversarial_table.py"),
    ("docs/results.md", f"{S}dwp_table.py {R}dwp_prior.md"),
    ("docs/results.md", f"{S}dwp_table.py {R}dwp_prior_conv12.md"),
    ("docs/results.md", f"{S}dwp_table.py {R}dwp_prior_conv1234.md"),
    ("docs/results.md", f"{S}whole_network_table.py {R}whole_network.md resnet20 all"),
    ("docs/results.md", f"{S}whole_network_table.py {R}whole_network.md dwpnet conv1,conv2"),
    ("docs/results.md", f"{S}whole_network_table.py {R}whole_network.md dwpnet conv1,conv2,conv3,conv4"),
    ("docs/results.md", f"{S}whole_network_table.py {R}whole_network.md dwpnet conv1"),
    ("docs/results.md", f"{S}whole_network_table.py {R}whole_network_dwpnet_sizes.md dwpnet conv1,conv2"),
    ("docs/results.md", f"{S}transfer_table.py {R}transfer.md {R}whole_network.md"),
    ("docs/results.md", f"{S}transfer_table.py {R}transfer1000.md {R}whole_network.md"),
    ("docs/results.md", f"{S}mnist_dwp_table.py {R}dwp_mnist.md"),
    ("docs/results.md", f"{S}mnist_budget_table.py {R}dwp_mnist.md {R}dwp_mnist_budget.md"),
    ("docs/results.md", f"{S}mnist_papervae_table.py {R}dwp_mnist.md {R}dwp_mnist_papervae.md"),
    ("docs/results.md", f"{S}dwp_kernel_check.py {R}dwp_kernels.json"),
    ("README.md", f"{S}whole_network_table.py {R}whole_network.md resnet20 all 100 "
                  "baseline,filterinit,chaininit,chaininit+l2sp,finetune"),
]


@pytest.mark.parametrize("doc,cmd", TABLES, ids=[c[len(S):] for _, c in TABLES])
def test_doc_table_is_what_the_printer_prints(doc, cmd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *shlex.split(cmd)], cwd=ROOT, capture_output=True, text=True,
                         env=env, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert len(rows) >= 3                                    # a header, its rule and at least one row
    text = (ROOT / doc).read_text()
    missing = [r for r in rows if r not in text]
    assert not missing, f"{doc} lacks {len(missing)} of {len(rows)} rows of `{cmd}`, e.g. {missing[0]}"


def test_every_printer_the_docs_name_is_checked():
    named = {m for doc in ("docs/results.md", "README.md")
             for m in re.findall(r"docs/scripts/(\w+\.py)", (ROOT / doc).read_text())}
    checked = {c.split()[0][len(S):] for _, c in TABLES}
    assert named and named <= checked, f"printers named in the docs but not checked: {named - checked}"
