"""The catalogue (GPU, link and model YAML files, and calibrations/) as package data: installed as
`hexgen2_profiles` (setup.cfg maps it to this folder), found by planner.inputs.catalog via importlib.resources."""
