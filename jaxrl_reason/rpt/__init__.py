"""Reinforcement pre-training (RPT, Dong et al. 2025): next-token prediction on ordinary text
posed as an RL task with a verifiable prefix-match reward, at the positions a small proxy
model finds hard (docs/rpt.md)."""
