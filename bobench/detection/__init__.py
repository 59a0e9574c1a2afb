"""Detection, instance segmentation and OOD detection (docs/protocol.md §4, §6).

``model`` puts any registry backbone under a torchvision R-CNN whose RoI heads ``heads``
builds (BoB's Cascade (Mask) R-CNN of ``cascade``, or one stage); ``data`` reads
COCO-format datasets with BoB's augmentations; ``train`` is the resumable training
loop; ``evaluate`` scores detections with pycocotools; ``sources`` prepares the
datasets (synthetic canvases, COCO 2017, Sim10k, Cityscapes); ``job`` ties them
together for the ``train_detector`` rule.
"""
