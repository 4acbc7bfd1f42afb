"""Training: a small Cosmos Policy on simulated demonstrations, on a CPU (cosmos-policy-train).

    # record 300 demonstration bags (expert + imperfect rollouts) and train on them:
    cosmos-policy-train --data /tmp/planar_demos --record 300 --out /tmp/planar_model \\
        --work-dir /tmp/planar_work --steps 2000 --time-budget 1800 --seed 0

The result is a model directory of exactly the formats the package loads for released
checkpoints (engine/model_dir.py; what cosmos-policy-convert writes): diffusers
CosmosTransformer3DModel weights (the 'tiny' preset through the package's CosmosDiT adapter),
Wan2.1 VAE weights ('tiny' preset), the T5-embedding file (fixed random vectors per
instruction, as no T5 model is available here), dataset statistics (min/max of the recorded
actions and joint positions) and model.json.

The VAE ('tiny' Wan2.1 preset) is first trained for --vae-steps as an autoencoder on the
demonstrations' camera images, encoded exactly as the policy encodes them (the conditioning
video: black prefix, 4 copies per camera), with a squared reconstruction error that weights the
non-background pixels --vae-foreground-weight times more (engine.training.
vae_reconstruction_loss), then frozen. Its latent mean rows are calibrated to unit scale on the
demonstration images (engine.training.calibrate_vae_latents; the decoder is adjusted to match).
With --vae-steps 0 it stays at random weights: docs/sim.md shows that such latents hardly carry
the small targets' positions, so the trained policy cannot find them.

Objective: engine.training (the reference's hybrid sigma distribution, video noise multiplier,
rectified-flow denoiser and weighting). Samples of successful episodes are policy samples
(conditioning: blank, proprio, cameras) three times in four and world-model samples (the action
frame conditioning too) otherwise. The actions of failed episodes and of policy rollouts
(--record-kinds policy: episodes of the --init-from model, run as policy_node runs it) are never
imitated: their samples are world-model samples, or with --unimitated-policy-share S a share S
of them are policy samples whose action frame is generated but not supervised, so the value the
node publishes (policy mode) learns their returns too. --recovery-every K adds, after each
policy rollout, the expert taking over at its states K, 2K, ... (recovery demonstrations,
imitated).

--planning trains the planning network of the --init-from model instead (the reference's
planning model, fine-tuned from the policy on rollouts): every sample of every episode, policy
rollouts and failures included, as a world-model sample (the executed actions given; future
images, future proprio and value supervised). The written directory is the --init-from model
(its policy DiT, VAE, statistics and embeddings unchanged) plus planning_dit.safetensors
(bf16) and SIM_PLANNING in model.json: one world-model pass scores every chunk, and the value
it generates, Q(s, a), is the value the node publishes (engine/planning.py).

Deterministic for a seed (batch, sigma and noise of step i come from a generator seeded with
(seed, i)), resumable from --work-dir (train_state.pt, written every --save-every steps and at
the end), and it stops at --steps or after --time-budget seconds, whichever comes first.

Modules, in the order a run uses them (layer: a capability over engine/, core and sim/):

    options.py       TrainOptions: every setting of a run, validated once
    data.py          episodes -> training samples (states, targets, what is imitated)
    batches.py       one step's draw (samples, modes, sigma, noise) and its clean latents
    optimization.py  learning-rate schedule, optimizer step, resumable TrainingState
    vae_phase.py     the VAE as an autoencoder with a position probe
    prepare.py       record, read, encode every state once (cached); --init-from models
    dit_phase.py     the DiT (policy or planning network) on the objective of engine/training.py
    model_writer.py  the model directory, in the released formats, read back strictly
"""
