"""The holders' portal: phone first, zh-CN by default with an English switch."""
