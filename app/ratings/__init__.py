"""Pure rating math (pairs, Elo, Bradley-Terry, agreement): numpy/scipy only, no web or database."""
