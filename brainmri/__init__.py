"""Brain tumor MRI classification: the package under the top-level scripts (which only parse arguments and
call it; it never imports them). Its modules, in the order a run goes through them:

setup
    config       the run configuration: defaults < YAML file < --set, strict types, a comment per field
    errors       UserError and cli_entry: bad input is one line and exit code 2, never a traceback
    atomic       files written whole or not at all (run files, caches)
    runs         run folders (never overwritten), env.json, seeding, logging; opening trained runs and models
data
    data         disk -> uint8 arrays: class folders in either layout, decoding, resizing, the cache
    synthetic    the synthetic demo set, with lesion masks and planes
    manifest     manifest.csv: which images are augmented copies of which (read by every run)
    balance      offline class balancing into a new dataset folder (augment.py)
    planes       slice planes: planes.csv and the plane estimator
audit and splits
    duplicates   near-duplicate detection and groups
    audit        exact and near-duplicate groups, label conflicts, leakage, the size shortcut
    splits       hold-out and k-fold splits by near-duplicate group, splits.csv, the roles TRAIN/VAL/TEST
    pipeline     a run's data: load, audit, split, and record it in the run folder
model
    models       the backbone registry, the head, the custom Keras objects (MacroMetric)
    backend      what differs between TensorFlow, JAX and PyTorch; the one compiled forward pass
training
    batches      arrays -> Keras input, and the on-the-fly augmentation layers
    training     one fold: build, fit (head, then fine-tuning), resume, keep the best model and predictions
    crossval     every fold in turn, then cv_summary and the training curves
evaluation and explanations
    predictions  predict(), and the predictions table (its one writer and reader)
    metrics      every number computed from labels and predictions
    testsets     the run's own test set and external folders
    evaluation   evaluate.py: reports per fold and for the ensemble, intervals, label errors, report.md
    binary       tumor vs no tumor: thresholds, rates, binary/report.md (binary_task.py)
    compare      variants on the same folds: plans, training, one table, paired tests (compare_backbones.py)
    cam          batched Grad-CAM and Grad-CAM++ on any backend, pointing game, deletion curve
    explain      gradcam.py: which images, their maps and panels, localization and faithfulness scores
reports
    plots        every figure, in one style
    study        reproduce.py: the study's plan, one folder per step, resumable
    report       the study's report.md and self-contained report.html
    download     the Kaggle datasets through kagglehub (reproduce.py --download)
"""

__version__ = "0.1.0"
