"""Names and helpers for what HL's messages carry, shared by both sides.

Server -> node (``train``): ``arrays`` (global model), ``hl`` (run settings),
``step`` (episode, step, epsilon, policy version, whether to decide, and
``proximal-mu`` from FedProx, or from HL and the hop baselines when
``--proximal-mu`` > 0), only when the node's copy is stale,
``policy`` (DQN weights), and with the ``progress`` observation,
``context`` (the server's part of it).
Node -> server: ``arrays`` (trained model) and ``metrics`` (loss,
num-examples, partition id, policy version, observation, next nodes).
"""

from __future__ import annotations

from flwr.app import RecordDict

ARRAYS = "arrays"
HL_CONFIG = "hl"
STEP = "step"
POLICY = "policy"
CONTEXT = "context"  # ``progress`` observation: the server's features
METRICS = "metrics"
# Weight mu of the proximal term a node adds to its local loss, in the step
# config: the key Flower's FedProx strategy writes (0 or absent: no term)
PROXIMAL_MU = "proximal-mu"
QUERY_IDENTIFY = "query.identify"
# In an identify reply: the node restores packed array records (hl_flower.packing)
UNPACKS = "unpacks"
QUERY_CHOOSE = "query.choose"

# Keys in the node's Context.state
STATE_POLICY = "policy"
STATE_POLICY_VERSION = "policy-version"
STATE_OPTIMIZER = "optimizer"
STATE_OPTIMIZER_EPISODE = "optimizer-episode"


def payload_bytes(content: RecordDict) -> int:
    """Bytes of array data in a message (models and policies)."""
    return sum(len(array.data)
               for record in content.array_records.values()
               for array in record.values())


def step_seed(seed: int, episode: int, step: int, stream: int) -> list[int]:
    """Seed sequence for one random stream of one step (reproducible runs)."""
    return [seed, episode, step, stream]


# Random streams derived from the run seed
STREAM_FIT = 1  # batch order of the node's local epoch
STREAM_EXPLORE = 2  # the holder's epsilon-greedy draw
