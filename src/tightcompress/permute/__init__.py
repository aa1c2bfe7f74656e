"""Permutation search (greedy start + simulated annealing) that makes a sparse matrix fit the format."""

from tightcompress.permute.search import AnnealConfig, SearchResult, greedy_col_perm, search_permutation

__all__ = ["AnnealConfig", "SearchResult", "greedy_col_perm", "search_permutation"]
