"""pcm_l2l_ros.snn: the spiking robot-arm controller learning a new trajectory from ONE update (natural e-prop).

ROS-free. Modules:

* ``params``   SNNConfig (hyper-parameters, Ortner et al. 2025 defaults) and SNNWeights (the six matrices);
* ``tasks``    clock input, Brownian target trajectories (resampled at the joint limits, or clipped as the
  paper), 16-bit coordinate code, kinematics hook, loss 0.5·MSE_ω + 0.5·MSE_xyz;
* ``families`` the task families (Brownian and shaped), their seeds and mixtures; ``shaped_families`` the curves;
* ``lif``      trainee LIF Numba kernel (+ eligibility traces, pseudo-derivative); ``lsg`` the LSG (LIF + ALIF);
* ``eprop``    the one update ΔW = -η Σ_t ē_preᵀ(ψ ⊙ L) (one GEMM), quantisation, e-prop baselines' signals;
* ``episode``  software one-shot episodes and metrics; ``onchip`` the same with [W_in; W_rec] on a PCM core;
* ``eval_cmd`` ``pcm-l2l eval-snn`` (``eval_families``: ``--family all``); ``metatrain``/``train_cmd``
  meta-training (PyTorch), ``pcm-l2l train-snn``;
  ``surrogate`` the surrogate-gradient recurrent run (custom autograd function) that meta-training differentiates.
"""
