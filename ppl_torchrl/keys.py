"""The TensorDict keys of an offline batch, in one place.

Every replay buffer built by :mod:`ppl_torchrl.data` yields batches with these keys
(TorchRL's TED layout: per-step quantities that result from the action live under
``"next"``). Losses read them through their ``tensor_keys`` (so a user can rename
them with ``set_keys``); recipes and data builders import them from here.

=========================  =====================================================
key                        meaning
=========================  =====================================================
``OBSERVATION``            s, float32 ``[*B, obs_dim]``
``ACTION``                 a from the dataset, float32 ``[*B, act_dim]`` in [-1, 1]
``NEXT_OBSERVATION``       s', float32 ``[*B, obs_dim]``
``NEXT_ACTION``            a' = the dataset's action at s' (ReBRAC critic penalty)
``REWARD``                 r (after any reward transform), float32 ``[*B, 1]``
``TERMINATED``             true environment termination: the only flag that stops bootstrapping
``TRUNCATED``              time-limit end of an episode (never stops bootstrapping)
``DONE``                   ``terminated | truncated`` (kept for TorchRL compatibility)
=========================  =====================================================
"""
from __future__ import annotations

OBSERVATION = "observation"
ACTION = "action"
NEXT_OBSERVATION = ("next", "observation")
NEXT_ACTION = ("next", "action")
REWARD = ("next", "reward")
DONE = ("next", "done")
TERMINATED = ("next", "terminated")
TRUNCATED = ("next", "truncated")

#: Keys every training batch must carry.
BATCH_KEYS = (OBSERVATION, ACTION, NEXT_OBSERVATION, NEXT_ACTION, REWARD, DONE, TERMINATED)
