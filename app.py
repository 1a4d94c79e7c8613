"""gruq's app: `scripts/run` (or `streamlit run app.py`) starts it.

This entry point only declares the pages; the first one, Launch, is where a
search is configured and started. Every page reads the run store and calls
gruq; gruq knows nothing of Streamlit.
"""

import streamlit as st

import ui

PAGES = [
    st.Page("app_pages/launch.py", title="Launch a search", icon=":material/rocket_launch:", default=True),
    st.Page("app_pages/live_run.py", title="Live run", icon=":material/monitoring:", url_path="Live_run"),
    st.Page("app_pages/explorer.py", title="Explorer and what-if", icon=":material/biotech:", url_path="Explorer"),
    st.Page("app_pages/compare.py", title="Compare runs", icon=":material/compare:", url_path="Compare"),
    st.Page("app_pages/learn.py", title="Learn", icon=":material/school:", url_path="Learn"),
    st.Page("app_pages/reproduce.py", title="Reproduce the paper", icon=":material/fact_check:", url_path="Reproduce"),
]

ui.spare_the_collector()  # the imports of earlier runs: out of every collection's way
ui.start_runner()  # a warm process that starts launched runs at once (gruq.search.runner)
st.navigation(PAGES).run()
