"""config.profile_steps: a jax.profiler trace of exactly those steps, where TensorBoard looks."""

import glob
import os

import pytest

from glm_jax.training import profiling
from tests.test_train_cli import train


@pytest.mark.slow
def test_profile_steps_trace_lands_in_tensorboard_layout_with_one_annotation_per_step(tmp_path):
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  train(workdir, "--config.total_steps=5", "--config.profile_steps=2:3")
  # TensorBoard's profile plugin reads <logdir>/plugins/profile/<run>/<host>.xplane.pb.
  traces = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1, os.listdir(workdir)
  data = ProfileData.from_file(traces[0])
  steps = {int(dict(event.stats).get("step_num", -1))
           for plane in data.planes for line in plane.lines for event in line.events
           if event.name == "train"}
  assert steps == {2, 3}


@pytest.mark.parametrize("spec, message", [("10", "first:last"), ("5:2", "first <= last"),
                                           ("0:3", "first <= last")])
def test_bad_profile_steps_are_refused_with_the_expected_form(spec, message):
  with pytest.raises(ValueError, match=message):
    profiling.parse_steps(spec)


def test_profile_steps_parse_inclusive_and_empty_means_off():
  assert profiling.parse_steps("10:15") == (10, 15)
  assert profiling.parse_steps("") is None
