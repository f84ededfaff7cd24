"""tfgen-reproduce: the tiny table end to end, skipping, resuming, claims, reports and errors."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tfgen import reproduce


@pytest.fixture(scope="module")
def data_overrides(binarized_mnist_dir, tfds_data_dir):
  return {"data.manual_dir": str(binarized_mnist_dir), "data.data_dir": tfds_data_dir}


@pytest.fixture(scope="module")
def capped_root(tmp_path_factory, data_overrides):
  """The whole tiny table run with --max_epochs=1 (1 of its 2 epochs), once for this file."""
  root = str(tmp_path_factory.mktemp("reproduce") / "root")
  outcomes = reproduce.run("tiny", root, max_epochs=1, overrides=data_overrides,
                           command="tfgen-reproduce run tiny --max_epochs=1",
                           show_progress=False)
  assert [(o.entry, o.status) for o in outcomes] == [
      ("tiny_vae", "done"), ("tiny_made", "done"), ("tiny_made_ensemble", "done")], outcomes
  return root


def _copy(root, tmp_path):
  """A copy of a ROOT, for tests that change it (its relative links stay links)."""
  copy = str(tmp_path / "root")
  shutil.copytree(root, copy, symlinks=True)
  return copy


def _result(root, name):
  with open(os.path.join(root, name, reproduce.RESULT_FILE), encoding="utf-8") as f:
    return json.load(f)


def test_result_json_records_numbers_protocol_epochs_and_provenance(capped_root):
  vae = _result(capped_root, "tiny_vae")
  assert vae["table"] == "tiny" and vae["config"] == "configs/iwae.py:tiny"
  assert 0 < vae["numbers"]["nll_nats"] <= -vae["numbers"]["elbo"] + 1e-3
  assert vae["numbers"]["nll_bits_per_dim"] > 0
  assert vae["protocol"]["num_importance_samples"] == 10
  assert (vae["protocol"]["split"], vae["protocol"]["binarization"]) == ("test", "fixed")
  assert vae["epochs"] == {"done": 1, "planned": 2, "complete": False, "stopped_early": False,
                           "best": None}
  assert vae["max_epochs"] == 1 and vae["command"].startswith("tfgen-reproduce run tiny")
  assert vae["wall_seconds"]["train"] > 0 and vae["wall_seconds"]["evaluate"] > 0
  assert vae["hardware"]["cpu_cores"] >= 1 and vae["hardware"]["gpus"] == []
  assert len(vae["git_commit"]) == 40 or vae["git_commit"] == "unknown"
  assert vae["versions"]["tensorflow"] and vae["date"].endswith("Z")
  assert vae["runs"][0]["epochs_before"] == 0 and vae["runs"][0]["epochs_after"] == 1
  assert not os.path.exists(os.path.join(capped_root, "tiny_vae", reproduce.CLAIM_FILE))
  # MADE: exact NLL of one mask; the ensemble entry evaluates the same weights with 4 masks.
  made, ensemble = _result(capped_root, "tiny_made"), _result(capped_root, "tiny_made_ensemble")
  assert made["protocol"]["nll"] == "exact" and made["numbers"]["elbo"] is None
  assert ensemble["trained_in"] == "tiny_made" and ensemble["epochs"]["done"] == 1
  assert ensemble["evaluation"]["step"] == made["evaluation"]["step"]
  assert ensemble["numbers"]["nll_nats"] != made["numbers"]["nll_nats"]


def test_a_second_run_skips_finished_entries_without_training(capped_root, data_overrides,
                                                             monkeypatch):
  from tfgen import train  # pylint: disable=g-import-not-at-top

  def no_training(*args, **kwargs):
    raise AssertionError("a finished entry was trained again")

  monkeypatch.setattr(train, "train", no_training)
  path = os.path.join(capped_root, "tiny_vae", reproduce.RESULT_FILE)
  mtime = os.path.getmtime(path)
  outcomes = reproduce.run("tiny", capped_root, max_epochs=1, overrides=data_overrides,
                           show_progress=False)
  assert {o.status for o in outcomes} == {"skipped"}
  assert all("finished (1 / 2 epochs)" in o.detail for o in outcomes)
  assert os.path.getmtime(path) == mtime


def test_resume_takes_over_a_stale_claim_and_skips_a_live_one(capped_root, data_overrides,
                                                              tmp_path):
  root = _copy(capped_root, tmp_path)
  dead = subprocess.Popen(["true"])
  dead.wait()
  live = subprocess.Popen(["sleep", "120"])
  try:
    for name, pid in (("tiny_vae", dead.pid), ("tiny_made", live.pid)):
      with open(os.path.join(root, name, reproduce.CLAIM_FILE), "w", encoding="utf-8") as f:
        json.dump({"host": socket.gethostname(), "pid": pid, "time": "earlier"}, f)
    # Without the cap: the 2 epochs the schedule plans.
    outcomes = {o.entry: o for o in reproduce.run("tiny", root, overrides=data_overrides,
                                                  show_progress=False)}
    assert live.poll() is None
  finally:
    live.kill()
    live.wait()
  assert outcomes["tiny_vae"].status == "done"
  assert "took over a stale claim" in outcomes["tiny_vae"].detail
  vae = _result(root, "tiny_vae")
  assert vae["epochs"]["done"] == 2 and vae["epochs"]["complete"]
  assert [(r["epochs_before"], r["epochs_after"]) for r in vae["runs"]] == [(0, 1), (1, 2)]
  assert vae["step"] == 16 and vae["max_epochs"] is None
  assert not os.path.exists(os.path.join(root, "tiny_vae", reproduce.CLAIM_FILE))
  assert outcomes["tiny_made"].status == "skipped"
  assert f"claimed by process {live.pid}" in outcomes["tiny_made"].detail
  assert os.path.exists(os.path.join(root, "tiny_made", reproduce.CLAIM_FILE))
  assert outcomes["tiny_made_ensemble"].status == "skipped"
  assert "has 1 of the 2 epochs" in outcomes["tiny_made_ensemble"].detail
  # The report shows the resumed entry as complete and the claimed ones as they were.
  text = reproduce.render("tiny", root)
  assert "| `tiny_vae` |" in text and "| 2 / 2 |" in text and "1 / 2 (capped)" in text


def test_claims_are_exclusive_and_only_dead_local_holders_are_stale(tmp_path):
  workdir = str(tmp_path / "entry")
  claim, why = reproduce.acquire_claim(workdir, "first")
  assert claim is not None and why == ""
  again, why = reproduce.acquire_claim(workdir, "second")
  assert again is None and f"claimed by process {os.getpid()}" in why
  reproduce.release_claim(claim)
  assert not os.path.exists(claim.path)
  path = os.path.join(workdir, reproduce.CLAIM_FILE)
  elsewhere = {"host": socket.gethostname() + "-other", "pid": 1, "time": "t"}
  assert reproduce.stale_reason(path, elsewhere) == ""  # Another host's process: not judged.
  with open(path, "w", encoding="utf-8") as f:
    f.write("")  # A writer that died before writing: stale only once it is old.
  assert reproduce.stale_reason(path, None) == ""
  os.utime(path, (0, 0))
  assert "unreadable" in reproduce.stale_reason(path, None)
  claim, why = reproduce.acquire_claim(workdir)
  assert claim is not None and "took over" in why
  reproduce.release_claim(claim)


def test_report_renders_not_run_entries_and_replaces_between_markers(capped_root, tmp_path):
  empty = reproduce.render("tiny", str(tmp_path / "nothing"))
  assert empty.count("not run") == 3 and "0 of 3 entries run" in empty
  assert "| 0 / 2 |" in empty
  paper = reproduce.render("iwae_table1_fixed", str(tmp_path / "nothing"))
  assert "| 86.76 [1] | not run |" in paper and "| 0 / 3280 |" in paper
  assert "| 82.90 [1] | not run |" in paper and "Burda" in paper
  assert "not recorded" in reproduce.render("autoregressive", str(tmp_path / "nothing"))

  begin, end = reproduce.markers("tiny")
  md = tmp_path / "results.md"
  md.write_text(f"# Results\n\nbefore\n{begin}\nold table\n{end}\nafter\n", encoding="utf-8")
  block = reproduce.report("tiny", capped_root, results_md=str(md))
  text = md.read_text(encoding="utf-8")
  assert text == f"# Results\n\nbefore\n{begin}\n{block}\n{end}\nafter\n"
  assert "old table" not in text and "3 of 3 entries run" in block
  assert "| `tiny_vae` | `configs/iwae.py:tiny` | — | **" in block and "1 / 2 (capped)" in block
  reproduce.report("tiny", capped_root, results_md=str(md))
  assert md.read_text(encoding="utf-8") == text  # Regenerating changes nothing.
  md.write_text("# Results without markers\n", encoding="utf-8")
  with pytest.raises(reproduce.ReproduceError, match="tfgen-reproduce tiny begin"):
    reproduce.report("tiny", capped_root, results_md=str(md))


def test_report_keeps_rows_whose_result_json_is_not_in_a_new_root(capped_root, tmp_path):
  begin, end = reproduce.markers("tiny")
  md = tmp_path / "results.md"
  md.write_text(f"{begin}\n{end}\n", encoding="utf-8")
  first = reproduce.report("tiny", capped_root, results_md=str(md))
  # A later report from a ROOT that holds only one entry's result (a new machine, say): that
  # row is rendered from it and the other two are kept as they were.
  partial = _copy(capped_root, tmp_path)
  for name in ("tiny_vae", "tiny_made_ensemble"):
    os.remove(os.path.join(partial, name, reproduce.RESULT_FILE))
  block = reproduce.report("tiny", partial, results_md=str(md))
  rows = lambda text: [l for l in text.splitlines() if l.startswith("| `")]
  assert rows(block) == rows(first) and "3 of 3 entries run" in block
  commit = _result(capped_root, "tiny_vae")["git_commit"][:10]
  assert f"The rows of `tiny_vae`, `tiny_made_ensemble` are kept from earlier reports " \
         f"(result.json at commit {commit}" in block and f"{partial} has no result.json" in block
  assert reproduce.report("tiny", partial, results_md=str(md)) == block  # Stable.
  empty = reproduce.report("tiny", partial, results_md=str(md), keep_previous=False)
  assert "1 of 3 entries run" in empty and empty.count("not run") == 2


def test_report_takes_the_gap_from_the_tables_reference_as_it_stands(capped_root, monkeypatch):
  tiny = reproduce.get_table("tiny")
  corrected = dataclasses.replace(tiny, entries=tuple(
      dataclasses.replace(e, paper=reproduce.Reference(500.0, "a corrected source"))
      if e.name == "tiny_vae" else e for e in tiny.entries))
  monkeypatch.setitem(reproduce.TABLES, "tiny", corrected)
  nll = _result(capped_root, "tiny_vae")["numbers"]["nll_nats"]
  assert _result(capped_root, "tiny_vae")["gap_nats"] is None  # Recorded without a reference.
  text = reproduce.render("tiny", capped_root)
  assert f"| 500.00 [1] | **{nll:.2f}** " in text and f"| {nll - 500:+.2f} |" in text
  assert "[1] a corrected source" in text


def test_user_errors_are_reproduce_errors(capped_root, tmp_path):
  with pytest.raises(reproduce.ReproduceError, match="unknown table 'nope'; tables: "):
    reproduce.run("nope", str(tmp_path))
  with pytest.raises(reproduce.ReproduceError, match="has no entry 'vea'; its entries: tiny_vae"):
    reproduce.run("tiny", str(tmp_path), entries=["vea"])
  with pytest.raises(reproduce.ReproduceError, match="max_epochs must be >= 1"):
    reproduce.run("tiny", str(tmp_path), max_epochs=0)
  with pytest.raises(reproduce.ReproduceError, match="did you mean 'train.batch_size'"):
    reproduce.run("tiny", str(tmp_path), overrides={"train.batchsize": "3"})
  with pytest.raises(reproduce.ReproduceError, match="must be of type int"):
    reproduce.run("tiny", str(tmp_path), overrides={"train.batch_size": "'many'"})
  with pytest.raises(reproduce.ReproduceError, match="is not FIELD=VALUE"):
    reproduce.parse_overrides(["train.batch_size"])
  root = _copy(capped_root, tmp_path)
  with open(os.path.join(root, "tiny_made", reproduce.RESULT_FILE), "w", encoding="utf-8") as f:
    f.write('{"format": 1, "entry": "ma')
  with pytest.raises(reproduce.ReproduceError, match="tiny_made/result.json is damaged"):
    reproduce.run("tiny", root)
  with pytest.raises(reproduce.ReproduceError, match="tiny_made/result.json is damaged"):
    reproduce.render("tiny", root)
  with open(os.path.join(root, "tiny_made", reproduce.RESULT_FILE), "w", encoding="utf-8") as f:
    json.dump({"format": 1, "table": "tiny", "entry": "tiny_made", "epochs": {"done": 1}}, f)
  with pytest.raises(reproduce.ReproduceError, match="not a complete .* result"):
    reproduce.render("tiny", root)
  # Another table's result in an entry's folder is refused, not reported as this table's.
  with pytest.raises(reproduce.ReproduceError, match="of table 'tiny'"):
    reproduce.read_result(root, "tiny_vae", "autoregressive")


def test_every_table_entry_builds_its_config():
  # Unique across tables: every table can use the same ROOT.
  every = [e.name for t in reproduce.TABLES.values() for e in t.entries]
  assert len(set(every)) == len(every)
  for table in reproduce.TABLES.values():
    names = [e.name for e in table.entries]
    for i, entry in enumerate(table.entries):
      config, planned = reproduce.entry_config(entry)
      assert planned == config.train.num_epochs >= 1
      if entry.trained_by:
        assert entry.trained_by in names[:i], entry.name
        trainer = table.entry(entry.trained_by)
        assert (trainer.config, dict(trainer.overrides)) == (entry.config, dict(entry.overrides))
        for field in entry.protocol.model_overrides:
          assert field in config.model, (entry.name, field)
      else:
        assert not entry.protocol.model_overrides, entry.name
  iwae = reproduce.get_table("iwae_table1_fixed")
  assert len(iwae.entries) == 12
  assert iwae.entry("iwae_l2_k50").config == (
      "configs/iwae.py:model=iwae,k=50,layers=2,schedule=paper")
  assert iwae.entry("vae_l1_k1").paper.nll_nats == 86.76
  assert {e.protocol.num_importance_samples for e in iwae.entries} == {5000}


def test_cli_unknown_table_is_one_line_and_exit_1(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-m", "tfgen.apps.reproduce", "run", "nope",
                           f"--workdir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip() == ("tfgen-reproduce: error: unknown table 'nope'; tables: "
                                   "autoregressive, iwae_table1_fixed, matnet, tiny")


def test_an_entry_that_stopped_early_is_finished_and_evaluated_at_its_best_epoch(
    data_overrides, tmp_path, monkeypatch):
  from tfgen import train  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "root")

  def scripted_validation(self, dataset, seed):  # Worse after epoch 1 (8 steps an epoch).
    del dataset, seed
    return {"log_prob": -100.0 - int(self.optimizer.iterations.numpy()) // 8}

  monkeypatch.setattr(train.Trainer, "evaluate_bounds", scripted_validation)
  overrides = {**data_overrides, "train.num_epochs": 4, "train.early_stopping_epochs": 1}
  outcomes = reproduce.run("tiny", root, entries=["tiny_made", "tiny_made_ensemble"],
                           overrides=overrides, show_progress=False)
  assert [o.status for o in outcomes] == ["done", "done"], outcomes
  made, ensemble = _result(root, "tiny_made"), _result(root, "tiny_made_ensemble")
  # Trained to epoch 2 of the 4 asked for ("planned" is the entry's own schedule, 2 epochs).
  assert made["epochs"] == {"done": 2, "planned": 2, "complete": True, "stopped_early": True,
                            "best": {"metric": "log_prob", "value": -101.0, "epoch": 1,
                                     "step": 8}}
  # Both evaluate the weights of epoch 1, not the newest checkpoint's (epoch 2).
  assert made["evaluation"]["step"] == ensemble["evaluation"]["step"] == 8
  assert ensemble["epochs"]["stopped_early"]
  text = reproduce.render("tiny", root)
  assert "| 2 / 2 (stopped early; best epoch 1) |" in text
  # Done although short of the 4 epochs asked for: a second run trains nothing.
  again = reproduce.run("tiny", root, entries=["tiny_made", "tiny_made_ensemble"],
                        overrides=overrides, show_progress=False)
  assert [o.status for o in again] == ["skipped", "skipped"], again
