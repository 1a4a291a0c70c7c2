"""Evaluation: what the benchmarks (``bench``) and training (``train``) both score with.

- ``metrics``: PSNR, SSIM, fPSNR, warping error, motion preservation, edge sharpness;
- ``cases``: a test case (input, reference, mask, alpha) and the paper's LUT cases;
- ``dev_data``: where the development clips and LUTs are, and loading a clip at benchmark size.
"""
