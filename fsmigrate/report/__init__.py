"""What people read: text, markdown and JSON renderings of runs, the audit report, HTML pages and charts."""
