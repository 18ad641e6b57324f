"""The regulation, controls, parameters, roster, waivers and attestations, validated once."""
