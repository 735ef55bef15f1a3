"""Economics: routing policy from measured outcomes (diurnal optimization). Plain pandas."""
