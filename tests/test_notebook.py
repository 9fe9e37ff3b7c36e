"""notebooks/colab_quickstart.ipynb runs headless on a CPU: trains, plots, fills blanks, exports."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "colab_quickstart.ipynb")


def _stdout(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream" and o.get("name") == "stdout")


@pytest.mark.slow
def test_colab_quickstart_trains_plots_fills_blanks_and_exports(tmp_path, monkeypatch):
  workdir = tmp_path / "quickstart"
  monkeypatch.setenv("GLM_QUICKSTART_STEPS", "30")
  monkeypatch.setenv("GLM_QUICKSTART_WORKDIR", str(workdir))
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
  code = [c for c in notebook.cells if c.cell_type == "code"]
  outputs = "\n".join(_stdout(c) for c in code)

  assert "JAX " in outputs and " on cpu: " in outputs           # device detection
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert records[-1]["step"] == 30 and records[-1]["loss"] < records[0]["loss"]
  assert (workdir / "checkpoints" / "30").is_dir()
  figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
  assert len(figures) == 1                                       # the loss curve
  assert "In the beginning God created the" in outputs           # blanks were filled
  assert (workdir / "export_bf16").is_dir() and "(bfloat16)" in outputs
