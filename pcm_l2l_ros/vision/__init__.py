"""pcm_l2l_ros.vision: few-shot Omniglot classification with a MAML-trained CNN on simulated PCM (ROS-free).

Modules (imported lazily; nothing heavy is imported by ``import pcm_l2l_ros.vision``):

* ``omniglot``  - loader (official zips / PNG trees / npz bundle -> 28x28 float, ink = 1), cache, download;
* ``sampler``   - N-way K-shot tasks (classes without replacement, distinct queries, optional rotations);
* ``model``     - the 4-conv CNN (per-task BatchNorm, readout-only delta rule), checkpoint I/O;
* ``maml``      - meta-training (second-order through the readout steps), software evaluation;
* ``deploy``    - ``FewShotChip``: the CNN on PCM cores, on-chip readout adaptation by sparse writes;
* ``shifts``    - optional test-time shift augmentation (shifted copies as pseudo-shots, query features averaged);
* ``train_cmd`` / ``eval_cmd`` - ``pcm-l2l train-cnn`` / ``pcm-l2l eval-cnn``.

For a ROS node::

    from pcm_l2l_ros.vision.deploy import FewShotChip, chip_configs
    chip = FewShotChip.from_checkpoint(MODELS_DIR / "cnn_5way.npz", chip_configs("hermes"), rng=0)
    res = chip.adapt_and_classify(support_x, support_y, query_x, drift_time_s=3600.0, rng=rng)
    res.labels, res.probs, res.devices_written, res.timings
"""
