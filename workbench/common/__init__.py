"""What every room shares: errors a user can cause, the data/weights/reports folders, atomic files, devices, stop
signals. Imports nothing of the workbench: the bottom of the house, beside `model`."""
