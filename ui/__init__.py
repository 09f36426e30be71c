"""Streamlit-side helpers shared by the pages: settings/URL state and small drawing widgets."""
