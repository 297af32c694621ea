"""`tfless build`: a single-file (or one-directory) executable embedding one model.

`bundle` stores a model in a NumPy-native form (graph JSON + weights .npz + a test vector)
so the executable needs neither h5py nor the file readers; `app` is the program that runs
inside the executable (`NAME predict|info|serve`); `build` drives PyInstaller. This module
imports nothing heavy so the frozen program stays small.
"""
