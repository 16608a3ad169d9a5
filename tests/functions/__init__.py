"""Tests of the function package: pure pandas, codecs, and the app in this process or as Lambda runs it."""
