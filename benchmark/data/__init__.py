"""Data tools: check a data set (validate), generate one (demo), build one from recordings
(prepare), and the one writer of the folder format they share."""
