"""Rollouts: a deployment change moved step by step, judged between steps, promoted or
rolled back on its own (see `driver.Rollouts`)."""

from modelport.rollouts.driver import Rollouts, parse_step, parse_steps

__all__ = ["Rollouts", "parse_step", "parse_steps"]
